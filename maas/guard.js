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
//
// It fails closed: what it cannot read, it does not forward. A compressed body (Triton would
// inflate what the guard could not read), an Inference-Header-Content-Length that is not plain
// digits within the body, a JSON header over MAX_JSON bytes (larger tensors travel in binary),
// a byte order mark, a body JSON.parse refuses (NaN and Infinity literals included: Triton's
// parser reads them), and an object with a key given twice (JSON.parse keeps the last, Triton
// the first: each would check another request) are each refused with a 4xx that says why.
// Triton then reads the same document the guard checked.
//
// A request of a Triton sequence (parameters.sequence_id, not 0) goes to @triton_sequence,
// whose upstream hashes $maas_sequence: every step of a sequence reaches the replica that
// holds its state.

import fs from 'fs';

// The largest JSON header read, before parsing: names, shapes, parameters and the small
// tensors a request carries as JSON (a batch of 64 series of 500 values is ~260 KB).
var MAX_JSON = 1048576;

function refuse(r, message, status) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status || 400, JSON.stringify({error: message}));
}

// The first key given twice in one object of a text JSON.parse accepted, else null.
function duplicateKey(text) {
    var stack = [];  // per open container: its keys (an object) or null (an array)
    var n = text.length;
    for (var i = 0; i < n; i++) {
        var c = text[i];
        if (c === '"') {
            var j = i + 1;
            while (text[j] !== '"') {
                j += text[j] === '\\' ? 2 : 1;
            }
            var k = j + 1;
            while (k < n && ' \t\r\n'.indexOf(text[k]) >= 0) {
                k++;
            }
            var keys = stack[stack.length - 1];
            if (keys && text[k] === ':') {
                var key = JSON.parse(text.slice(i, j + 1));  // escapes decoded: "\u0061" is "a"
                if (Object.prototype.hasOwnProperty.call(keys, key)) {
                    return key;
                }
                keys[key] = true;
            }
            i = j;
        } else if (c === '{') {
            stack.push({});
        } else if (c === '[') {
            stack.push(null);
        } else if (c === '}' || c === ']') {
            stack.pop();
        }
    }
    return null;
}

function isDim(d) {
    return typeof d === 'number' && Number.isInteger(d) && d >= 0;
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
        var buffer = r.requestBuffer;
        if (buffer !== undefined) {
            // An empty body's buffer is detached: reading it throws.
            return buffer.length ? buffer : Buffer.alloc(0);
        }
    } catch (e) {
        // read from the file below
    }
    var file = r.variables.request_body_file;
    return file ? fs.readFileSync(file) : Buffer.alloc(0);
}

function infer(r) {
    var encoding = r.headersIn['Content-Encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
        refuse(r, 'Content-Encoding ' + JSON.stringify(encoding) + ': send the body uncompressed',
               415);
        return;
    }
    var body = bodyOf(r);
    var stated = r.headersIn['Inference-Header-Content-Length'];
    var end = body.length;
    if (stated !== undefined) {
        if (!/^[0-9]{1,10}$/.test(stated) || Number(stated) > body.length) {
            refuse(r, 'Inference-Header-Content-Length ' + JSON.stringify(stated)
                   + ': digits only, at most the ' + body.length + ' bytes of the body');
            return;
        }
        end = Number(stated);
    }
    if (end > MAX_JSON) {
        refuse(r, 'the JSON header is ' + end + ' bytes, over the ' + MAX_JSON + ' this server '
               + 'reads: send large tensors as binary data', 413);
        return;
    }
    if (end >= 3 && body[0] === 0xEF && body[1] === 0xBB && body[2] === 0xBF) {
        refuse(r, 'the JSON header starts with a byte order mark: send plain UTF-8');
        return;
    }
    var text = body.slice(0, end).toString();
    var header;
    try {
        header = JSON.parse(text);
    } catch (e) {
        refuse(r, 'the request is not JSON (' + e.message + '); NaN and Infinity are not JSON');
        return;
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
        refuse(r, 'the request must be a JSON object');
        return;
    }
    var twice = duplicateKey(text);
    if (twice !== null) {
        refuse(r, 'key ' + JSON.stringify(twice) + ' is given twice in one object');
        return;
    }
    if (!Array.isArray(header.inputs)) {
        refuse(r, 'the request has no "inputs" array');
        return;
    }
    var inputs = header.inputs;
    for (var i = 0; i < inputs.length; i++) {
        var input = inputs[i];
        var shape = input && typeof input === 'object' ? input.shape : undefined;
        if (!Array.isArray(shape) || !shape.every(isDim)) {
            refuse(r, 'input ' + (input && input.name !== undefined ? "'" + input.name + "'" : i)
                   + ': its shape must be an array of whole numbers from 0');
            return;
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
    var sequence = header.parameters ? header.parameters.sequence_id : undefined;
    if (sequence !== undefined && sequence !== null && sequence !== 0 && sequence !== '') {
        r.variables.maas_sequence = String(sequence);
        r.internalRedirect('@triton_sequence');
        return;
    }
    r.internalRedirect('@triton');
}

export default {infer};
