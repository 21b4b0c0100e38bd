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
// Integers beyond 2^53 and numbers beyond a double's range are refused too: the guard sends
// Triton the JSON header it parsed, re-serialised, so that both read the same document, and
// those would not survive the trip.
//
// Behind a front door with tenants (maas.tenants), nginx has checked the client key before
// the guard runs; the guard writes the tenant's priority class into parameters.priority.
// A request of a Triton sequence (parameters.sequence_id, not 0) goes to the sequence
// upstream, which hashes $maas_sequence: every step of a sequence reaches the replica that
// holds its state.

import fs from 'fs';

// The largest JSON header read, before parsing: names, shapes, parameters and the small
// tensors a request carries as JSON (a batch of 64 series of 500 values is ~260 KB).
var MAX_JSON = 1048576;

function refuse(r, message, status) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status || 400, JSON.stringify({error: message}));
}

// What JSON.parse accepted but would not survive re-serialisation unchanged, else null: a key
// given twice in one object (JSON.parse keeps the last, Triton the first), an integer beyond
// 2^53 (a double cannot hold it: 9007199254740993 would reach Triton as ...992) or a number
// beyond a double's range (it would become null).
function unsafe(text) {
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
                    return 'key ' + JSON.stringify(key) + ' is given twice in one object';
                }
                keys[key] = true;
            }
            i = j;
        } else if (c === '-' || (c >= '0' && c <= '9')) {
            var e = i + 1;
            while (e < n && '0123456789.eE+-'.indexOf(text[e]) >= 0) {
                e++;
            }
            var number = text.slice(i, e);
            var value = Number(number);
            if (!isFinite(value)) {
                return 'number ' + number + ' is beyond a double\'s range';
            }
            if (Math.abs(value) > Number.MAX_SAFE_INTEGER && /^-?[0-9]+$/.test(number)) {
                return 'integer ' + number + ' is beyond 2^53, which JSON numbers hold exactly: '
                       + 'send it as binary data (or a sequence ID as a string)';
            }
            i = e - 1;
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
    var problem = unsafe(text);
    if (problem !== null) {
        refuse(r, problem);
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
    var parameters = header.parameters;
    if (parameters === undefined) {
        parameters = header.parameters = {};
    } else if (parameters === null || typeof parameters !== 'object' || Array.isArray(parameters)) {
        refuse(r, '"parameters" must be an object');
        return;
    }
    if (Object.prototype.hasOwnProperty.call(parameters, 'maas-tenant')) {
        refuse(r, 'parameters: "maas-tenant" is the front door\'s to say');
        return;
    }
    var priority = r.variables.maas_priority;
    if (priority) {  // the tenant's class (maas.tenants), whatever the request asked
        parameters.priority = Number(priority);
    }
    var target = '/maas-triton';
    var sequence = parameters.sequence_id;
    if (sequence !== undefined && sequence !== null && sequence !== 0 && sequence !== '') {
        r.variables.maas_sequence = String(sequence);
        target = '/maas-triton-sequence';
    }
    forward(r, target, JSON.stringify(header), body.slice(end), stated !== undefined);
}

// Triton gets the header the guard checked, re-serialised (one document for both parsers),
// then the binary tensors as they came; the client gets Triton's answer as it is.
function forward(r, target, json, binary, binaryExtension) {
    var sent = Buffer.from(json);
    r.variables.maas_json_length = binaryExtension ? String(sent.length) : '';
    var options = {method: 'POST', body: binary.length ? Buffer.concat([sent, binary]) : sent};
    if (r.variables.args) {
        options.args = r.variables.args;
    }
    // The infer location's URI (a large body came here through /maas-body-in-file).
    r.subrequest(target + r.variables.maas_infer_uri, options, function (reply) {
        for (var i = 0; i < PASSED.length; i++) {
            var value = reply.headersOut[PASSED[i]];
            if (value !== undefined) {
                r.headersOut[PASSED[i]] = value;
            }
        }
        r.return(reply.status, reply.responseBuffer || '');
    });
}

// What of Triton's answer headers reach the client (nginx sets the length itself).
var PASSED = ['Content-Type', 'Content-Encoding', 'Inference-Header-Content-Length'];

export default {infer};
