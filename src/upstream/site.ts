/**
 * Where credentials may go: the upstream's own host, or a token realm on the
 * same registrable domain (auth.docker.io for registry-1.docker.io), over the
 * same scheme. The registrable domain comes from the Public Suffix List
 * (tldts, private suffixes included, so a.github.io and b.github.io differ).
 * Registries that give each tenant a subdomain of one domain and keep the
 * token realm on that subdomain are matched by exact host only.
 */
import {getDomain} from 'tldts';

const TENANT_SUFFIXES = ['azurecr.io', 'pkg.dev', 'amazonaws.com', 'ocir.io', 'jfrog.io'];

export function registrableDomain(hostname: string): string {
	return getDomain(hostname, {allowPrivateDomains: true}) ?? hostname;
}

export function sameSite(a: string, b: string): boolean {
	const left = new URL(a);
	const right = new URL(b);
	if (left.protocol !== right.protocol) {
		return false; // never move credentials between cleartext and TLS
	}

	const leftHost = left.hostname.toLowerCase();
	const rightHost = right.hostname.toLowerCase();
	if (leftHost === rightHost) {
		return true;
	}

	if (TENANT_SUFFIXES.some(suffix => leftHost.endsWith(`.${suffix}`) || rightHost.endsWith(`.${suffix}`))) {
		return false;
	}

	const leftDomain = getDomain(leftHost, {allowPrivateDomains: true});
	return leftDomain !== null && leftDomain === getDomain(rightHost, {allowPrivateDomains: true});
}
