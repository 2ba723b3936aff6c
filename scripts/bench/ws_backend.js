// The app side of the WebSocket benchmark: answers every Upgrade with 101 and
// echoes raw bytes back (the router tunnels bytes; no framing is needed to
// check that a tunnel is alive). Listens on the Unix socket path argv[2].
const http = require('http');
const server = http.createServer((req, res) => res.end('ok\n'));
server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: x\r\n\r\n');
  socket.on('data', (d) => socket.write(d));
  socket.on('error', () => socket.destroy());
});
server.maxConnections = 100000;
server.listen(process.argv[2]);
