/**
 * The yardstick for "manifest by tag within its TTL": a plain node:http
 * server answering the same manifest bytes, with the same headers, from
 * memory. Run as its own process:
 *   node --import tsx bench/manifest-server.ts PORT MANIFEST_FILE MEDIA_TYPE
 */
import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import {createServer} from 'node:http';

const [port, file, mediaType] = process.argv.slice(2);
const body = readFileSync(file!);
const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
const headers = {
	'content-type': mediaType!,
	'content-length': String(body.length),
	'docker-content-digest': digest,
	etag: `"${digest}"`,
	'docker-distribution-api-version': 'registry/2.0',
};

const server = createServer((req, res) => {
	if (req.url === '/v2/') {
		res.writeHead(200, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'});
		res.end('{}');
		return;
	}

	res.writeHead(200, headers);
	res.end(req.method === 'HEAD' ? undefined : body);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => {
	server.close();
	server.closeAllConnections();
	process.exit(0);
});
