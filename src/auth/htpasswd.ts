/**
 * Client authentication against an htpasswd file of bcrypt entries (as made
 * by `htpasswd -Bbn user pass`). bcrypt is slow on purpose and Docker sends
 * Basic credentials with every request, so verified pairs are remembered for
 * a few minutes (by a hash of the pair, never the password itself).
 */
import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import bcrypt from 'bcryptjs';
import {LRUCache} from 'lru-cache';

export class Htpasswd {
	readonly #entries = new Map<string, string>();
	readonly #verified = new LRUCache<string, true>({max: 1000, ttl: 5 * 60_000});

	constructor(text: string) {
		for (const [index, raw] of text.split(/\r?\n/).entries()) {
			const line = raw.trim();
			if (line === '' || line.startsWith('#')) {
				continue;
			}

			const colon = line.indexOf(':');
			const user = line.slice(0, colon);
			const hash = line.slice(colon + 1);
			if (colon <= 0 || !/^\$2[aby]\$\d\d\$/.test(hash)) {
				throw new Error(`line ${index + 1}: not a bcrypt entry (create one with htpasswd -Bbn USER PASSWORD)`);
			}

			this.#entries.set(user, hash);
		}
	}

	static load(file: string): Htpasswd {
		return new Htpasswd(readFileSync(file, 'utf8'));
	}

	get size(): number {
		return this.#entries.size;
	}

	async verify(user: string, password: string): Promise<boolean> {
		const hash = this.#entries.get(user);
		if (hash === undefined) {
			return false;
		}

		const key = createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
		if (this.#verified.has(key)) {
			return true;
		}

		const ok = await bcrypt.compare(password, hash);
		if (ok) {
			this.#verified.set(key, true);
		}

		return ok;
	}
}

/** Parses `Authorization: Basic base64(user:pass)`. */
export function parseBasic(header: string | undefined): {user: string; password: string} | undefined {
	const match = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
	if (!match) {
		return undefined;
	}

	const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
	const colon = decoded.indexOf(':');
	return colon < 0 ? undefined : {user: decoded.slice(0, colon), password: decoded.slice(colon + 1)};
}
