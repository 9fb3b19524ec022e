// A Sluice function in Node.js: tags each row with a tier and drops sign-outs.
//
// Sluice POSTs one chunk at a time to this process (docs/function-protocol.md) and turns the
// answer into outcomes: forward (with the changed row), drop (with a reason) or quarantine.
// No packages: `node handler.js` listens on $PORT.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');

const TOKEN = process.env.SLUICE_FUNCTION_TOKEN || '';

// One outcome per event, in order.
function handle(chunk) {
  const high = Number((chunk.config || {}).high ?? 0.8);
  const outcomes = chunk.events.map((row) => {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      return { outcome: 'quarantine', reason: 'not_an_object' };
    }
    if (row.event_type === 'logout') return { outcome: 'drop', reason: 'not_billable' };
    const tier = typeof row.score === 'number' && row.score >= high ? 'high' : 'standard';
    return { outcome: 'forward', event: { ...row, tier } };
  });
  return { outcomes };
}

function authorized(header) {
  const expected = Buffer.from('Bearer ' + TOKEN);
  const given = Buffer.from(header || '');
  return TOKEN !== '' && given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

function answer(response, status, body) {
  const data = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  response.end(data);
}

const server = http.createServer((request, response) => {
  // Only Sluice calls this function: it sends the token it started the process with.
  if (request.method !== 'POST') return answer(response, 405, { title: 'method not allowed' });
  if (!authorized(request.headers.authorization)) return answer(response, 401, { title: 'unauthorized' });
  const parts = [];
  request.on('data', (part) => parts.push(part));
  request.on('end', () => {
    let chunk;
    try {
      chunk = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      return answer(response, 400, { title: 'the body is not JSON' });
    }
    answer(response, 200, handle(chunk));
  });
});

// Listens on the socket Sluice bound for it (descriptor 3, LISTEN_FDS=1: no other local user can
// take its port first; $PORT when run by hand) until SIGTERM, then stops as soon as no answer is
// being written. Sluice
// keeps its connections open between chunks (and may hold one it has not used yet, which
// node's own close() would wait for): the idle ones are closed at once, the busy ones after
// their answer.
function serve(server, port) {
  const inFlight = new Map(); // socket → requests being answered
  let stopping = false;
  server.on('connection', (socket) => {
    inFlight.set(socket, 0);
    socket.on('close', () => inFlight.delete(socket));
  });
  server.on('request', (request, response) => {
    const socket = request.socket;
    inFlight.set(socket, (inFlight.get(socket) || 0) + 1);
    response.on('finish', () => {
      if (!inFlight.has(socket)) return;
      const left = inFlight.get(socket) - 1;
      inFlight.set(socket, left);
      if (stopping && left === 0) socket.end();
    });
  });
  const passed = process.env.LISTEN_FDS === '1' && process.env.LISTEN_PID === String(process.pid);
  server.listen(passed ? { fd: 3 } : { port, host: '127.0.0.1' });
  process.on('SIGTERM', () => {
    stopping = true;
    server.close(() => process.exit(0));
    for (const [socket, busy] of inFlight) if (busy === 0) socket.destroy();
  });
}

if (require.main === module) serve(server, Number(process.env.PORT));

module.exports = { handle, authorized };
