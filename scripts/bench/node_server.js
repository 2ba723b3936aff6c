// A minimal Node HTTP server for the shim-overhead benchmark: answers every
// request with "ok\n". Listens on the Unix socket path given as argv[2], or,
// given a number, on 127.0.0.1:<number> (turned into a Unix socket by the
// shim when run under it).
const http = require('http');
const where = process.argv[2];
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
  res.end('ok\n');
});
server.keepAliveTimeout = 60000;
if (/^\d+$/.test(where)) server.listen(Number(where), '127.0.0.1');
else server.listen(where);
