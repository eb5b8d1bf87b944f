/**
 * Where credentials may go: the upstream's own host, or a token realm on the
 * same registrable domain (auth.docker.io for registry-1.docker.io). The
 * "registrable domain" here is the last two labels, which is right for the
 * registries people mirror (docker.io, ghcr.io, quay.io, gcr.io, k8s.io) and
 * errs towards not sending credentials for hosts under a public suffix like co.uk.
 */
export function registrableDomain(hostname: string): string {
	if (/^[\d.]+$/.test(hostname) || hostname.includes(':')) {
		return hostname; // IP addresses: exact match only
	}

	return hostname.split('.').slice(-2).join('.');
}

export function sameSite(a: string, b: string): boolean {
	const left = new URL(a);
	const right = new URL(b);
	if (left.protocol === 'https:' && right.protocol === 'http:') {
		return false; // never downgrade credentials to cleartext
	}

	return registrableDomain(left.hostname.toLowerCase()) === registrableDomain(right.hostname.toLowerCase());
}
