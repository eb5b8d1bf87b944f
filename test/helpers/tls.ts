/**
 * A throwaway certificate authority and a server certificate for 127.0.0.1
 * (IP SAN, plus `localhost`), made with openssl; and a small HTTP(S) client
 * that trusts a given CA (Node's fetch cannot take one per request).
 */
import {request as httpRequest, type IncomingHttpHeaders} from 'node:http';
import {request as httpsRequest} from 'node:https';
import {mkdir, readFile, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {run, tempDir} from './process.js';

export type TestCa = {
	dir: string;
	/** The CA certificate (PEM), the file clients are told to trust. */
	caCert: string;
	caCertPath: string;
	/** The server certificate (PEM, signed by the CA) and its key, as `tls.cert` / `tls.key`. */
	certPath: string;
	keyPath: string;
	/** A directory holding only `ca.crt`: what `skopeo --cert-dir`, `podman --cert-dir` and docker's certs.d expect. */
	certDir: string;
};

async function openssl(args: string[]): Promise<void> {
	const result = await run('openssl', args);
	if (result.code !== 0) {
		throw new Error(`openssl ${args[0] ?? ''} failed (exit ${result.code}): ${result.stderr.trim()}`);
	}
}

/** A self-signed CA and a leaf for 127.0.0.1 / localhost, valid for two days. */
export async function makeTestCa(): Promise<TestCa> {
	const dir = await tempDir('tls-');
	const caKey = join(dir, 'ca.key');
	const caCertPath = join(dir, 'ca.pem');
	const keyPath = join(dir, 'tls.key');
	const csr = join(dir, 'tls.csr');
	const certPath = join(dir, 'tls.crt');
	const ext = join(dir, 'tls.ext');
	await openssl([
		'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=registry-mirror test CA',
		'-keyout', caKey, '-out', caCertPath,
		'-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,keyCertSign,cRLSign',
	]);
	await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', keyPath, '-out', csr]);
	// Go (docker, containerd, skopeo) ignores the CN: the IP SAN is what makes 127.0.0.1 match.
	await writeFile(ext, [
		'basicConstraints=critical,CA:FALSE',
		'keyUsage=critical,digitalSignature,keyEncipherment',
		'extendedKeyUsage=serverAuth',
		'subjectAltName=IP:127.0.0.1,DNS:localhost',
		'',
	].join('\n'));
	await openssl(['x509', '-req', '-in', csr, '-CA', caCertPath, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', certPath]);
	const caCert = await readFile(caCertPath, 'utf8');
	const certDir = join(dir, 'certs');
	await mkdir(certDir);
	await writeFile(join(certDir, 'ca.crt'), caCert);
	return {dir, caCert, caCertPath, certPath, keyPath, certDir};
}

export type RawResponse = {status: number; headers: IncomingHttpHeaders; body: Buffer};

export type RawRequestOptions = {
	method?: string;
	headers?: Record<string, string>;
	body?: Buffer;
	/** PEM of the CA to trust for https URLs (default: the system's). */
	ca?: string;
	timeoutMs?: number;
};

/** One request over http or https (trusting `ca`), the whole body read; rejects on TLS or network errors. */
export async function rawFetch(url: string, options: RawRequestOptions = {}): Promise<RawResponse> {
	const target = new URL(url);
	const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
	return new Promise((resolve, reject) => {
		const req = send(
			target,
			{
				method: options.method ?? 'GET',
				headers: {...options.headers, ...(options.body === undefined ? {} : {'content-length': String(options.body.length)})},
				...(options.ca === undefined ? {} : {ca: options.ca}),
				agent: false,
				timeout: options.timeoutMs ?? 30_000,
			},
			(res) => {
				const chunks: Buffer[] = [];
				res.on('data', (chunk: Buffer) => chunks.push(chunk));
				res.once('error', reject);
				res.once('end', () => {
					resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks)});
				});
			},
		);
		req.once('timeout', () => req.destroy(new Error(`rawFetch ${url}: timed out`)));
		req.once('error', reject);
		req.end(options.body);
	});
}
