/**
 * The HTTP(S) server around the Koa application, with the answers Koa never
 * gets to give: requests Node's parser rejects (bad framing, oversized
 * headers, unknown methods, bytes that are not HTTP) and CONNECT still get a
 * V2 error body with the API-version header, then the connection is closed.
 */
import {type IncomingMessage, type Server, type ServerResponse, STATUS_CODES, createServer as createHttpServer} from 'node:http';
import {createServer as createHttpsServer} from 'node:https';
import {readFileSync} from 'node:fs';
import {type Duplex} from 'node:stream';
import {type Config} from '../config/load.js';
import {FrameworkError} from '../v2/errors.js';
import {API_VERSION_HEADER} from './errors.js';
import {type MirrorApp} from './app.js';

/** The status for an error Node's HTTP parser reports (`clientError`). */
function parserStatus(error: NodeJS.ErrnoException): number {
	switch (error.code) {
		case 'HPE_HEADER_OVERFLOW': {
			return 431;
		}

		case 'ERR_HTTP_REQUEST_TIMEOUT': {
			return 408;
		}

		default: {
			return 400;
		}
	}
}

/** A complete HTTP/1.1 response with a V2 error body (as for any 4xx the framework raises), written straight to the socket. */
function rawErrorResponse(status: number, message: string, detail?: unknown): string {
	const body = JSON.stringify(new FrameworkError(status, {message, detail}).toJSON());
	return [
		`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
		'Content-Type: application/json',
		`${API_VERSION_HEADER}: registry/2.0`,
		`Content-Length: ${Buffer.byteLength(body)}`,
		'Connection: close',
		'',
		body,
	].join('\r\n');
}

function answerAndClose(socket: Duplex, status: number, message: string, detail?: unknown): void {
	if (socket.writable) {
		socket.end(rawErrorResponse(status, message, detail));
	} else {
		socket.destroy();
	}
}

export function createServer(app: MirrorApp, config: Pick<Config, 'tls'>): Server {
	const callback = app.koa.callback();
	const {early} = app;
	const handler = early
		? (request: IncomingMessage, response: ServerResponse): void => {
				// Koa answers whatever the early path leaves, and anything it trips over before sending a byte.
				const fallBack = (error?: unknown) => {
					if (response.headersSent) {
						response.destroy(error instanceof Error ? error : undefined);
					} else {
						void callback(request, response);
					}
				};

				try {
					const answered = early(request, response);
					if (answered === false) {
						void callback(request, response);
					} else if (answered !== true) {
						answered.then(done => done || fallBack(), fallBack);
					}
				} catch (error) {
					fallBack(error);
				}
			}
		: (request: IncomingMessage, response: ServerResponse): void => void callback(request, response);
	const server: Server = config.tls
		? createHttpsServer({cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key)}, handler)
		: createHttpServer(handler);
	server.keepAliveTimeout = 65_000;
	server.requestTimeout = 0; // blob uploads and downloads take as long as they take
	server.headersTimeout = 60_000;
	server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
		if (error.code === 'ECONNRESET' || !socket.writable) {
			socket.destroy();
			return;
		}

		const status = parserStatus(error);
		answerAndClose(socket, status, status === 431 ? 'request headers too large' : 'malformed HTTP request', {reason: error.code ?? error.message});
	});
	// CONNECT is not a registry method: no tunnel, a V2 error.
	server.on('connect', (_request: IncomingMessage, socket: Duplex) => {
		answerAndClose(socket, 405, 'CONNECT is not supported');
	});
	return server;
}
