// maas: nginx (njs) guard in front of Triton's HTTP inference endpoint.
//
// tritonserver 2.51's HTTP front end sizes an input's buffer from the shape a request states
// before it checks anything else: a 98-byte body claiming shape [26048, 15028854, 3962] makes
// it abort (SIGABRT: every request in flight on that replica fails), and one claiming ~1e9
// INT64s holds a request for over 30 s while its memory grows past 8 GB. Triton's gRPC front
// end refuses the same requests cleanly. Every element of a tensor carried in the body takes at
// least one byte of it (a JSON number, a binary value, a BYTES length prefix), so a shape with
// more elements than the body has bytes cannot be a real request: refused here with a 400
// naming the input, before a replica sees it. Inputs in shared memory are not counted.
// Anything else (including bodies that do not parse) goes to Triton, which answers for itself.
//
// A request of a Triton sequence (parameters.sequence_id, not 0) goes to @triton_sequence,
// whose upstream hashes $maas_sequence: every step of a sequence reaches the replica that
// holds its state.

import fs from 'fs';

function refuse(r, message) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(400, JSON.stringify({error: message}));
}

function elements(shape) {
    var count = 1;
    for (var i = 0; i < shape.length; i++) {
        count *= Number(shape[i]);
    }
    return count;
}

function bodyOf(r) {
    // In memory up to 1,000,000 bytes; larger bodies nginx keeps in a file for us
    // (client_body_in_file_only; njs throws "request body is in a file" on requestBuffer).
    try {
        if (r.requestBuffer !== undefined) {
            return r.requestBuffer;
        }
    } catch (e) {
        // read from the file below
    }
    var file = r.variables.request_body_file;
    return file ? fs.readFileSync(file) : Buffer.alloc(0);
}

function infer(r) {
    var body = bodyOf(r);
    var stated = r.headersIn['Inference-Header-Content-Length'];
    var json = stated === undefined ? body : body.slice(0, Number(stated));
    var header;
    try {
        header = JSON.parse(json.toString());
    } catch (e) {
        r.internalRedirect('@triton');
        return;
    }
    var inputs = header && Array.isArray(header.inputs) ? header.inputs : [];
    for (var i = 0; i < inputs.length; i++) {
        var input = inputs[i];
        if (!input || !Array.isArray(input.shape)) {
            continue;
        }
        if (input.parameters && input.parameters.shared_memory_region !== undefined) {
            continue;
        }
        var count = elements(input.shape);
        if (count > body.length) {
            refuse(r, "input '" + input.name + "': shape [" + input.shape.join(', ') + '] is '
                   + count + ' elements, more than the ' + body.length
                   + ' bytes of this request can carry');
            return;
        }
    }
    var sequence = header && header.parameters ? header.parameters.sequence_id : undefined;
    if (sequence !== undefined && sequence !== null && sequence !== 0 && sequence !== '') {
        r.variables.maas_sequence = String(sequence);
        r.internalRedirect('@triton_sequence');
        return;
    }
    r.internalRedirect('@triton');
}

export default {infer};
