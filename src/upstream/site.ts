/**
 * Where credentials may go: the upstream's own host, or a token realm on the
 * same registrable domain (auth.docker.io for registry-1.docker.io). The
 * "registrable domain" here is the last two labels, which is right for the
 * registries people mirror (docker.io, ghcr.io, quay.io, gcr.io, k8s.io) and
 * keeps three labels under country-code second levels like co.uk.
 */
const SECOND_LEVEL = new Set(['co', 'com', 'net', 'org', 'ac', 'gov', 'edu', 'ne', 'or']);

export function registrableDomain(hostname: string): string {
	if (/^[\d.]+$/.test(hostname) || hostname.includes(':')) {
		return hostname; // IP addresses: exact match only
	}

	const labels = hostname.split('.');
	// example.co.uk, example.com.au: country code domains with a generic second level keep three labels.
	const keep = labels.length >= 3 && labels.at(-1)!.length === 2 && SECOND_LEVEL.has(labels.at(-2)!) ? 3 : 2;
	return labels.slice(-keep).join('.');
}

export function sameSite(a: string, b: string): boolean {
	const left = new URL(a);
	const right = new URL(b);
	if (left.protocol !== right.protocol) {
		return false; // never move credentials between cleartext and TLS
	}

	return registrableDomain(left.hostname.toLowerCase()) === registrableDomain(right.hostname.toLowerCase());
}
