/** Config values that people write as strings: durations ("5m") and sizes ("50GiB"). */

const DURATION_UNITS = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000} as const;
const SIZE_UNITS = {
	b: 1,
	k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
	ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40,
} as const;

/** "90s", "5m", "1h30m", "250ms" or a number of seconds → milliseconds; undefined when malformed. */
export function parseDuration(value: string | number): number | undefined {
	if (typeof value === 'number') {
		return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
	}

	const text = value.trim().toLowerCase();
	if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text)) {
		return undefined;
	}

	let total = 0;
	for (const match of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
		total += Number(match[1]) * DURATION_UNITS[match[2] as keyof typeof DURATION_UNITS];
	}

	return total;
}

/** "50GiB", "500MB", "1.5 TiB" or a number of bytes → bytes; undefined when malformed. */
export function parseSize(value: string | number): number | undefined {
	if (typeof value === 'number') {
		return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
	}

	const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
	if (!match) {
		return undefined;
	}

	const unit = (match[2] ?? '').toLowerCase() || 'b';
	if (!Object.hasOwn(SIZE_UNITS, unit)) {
		return undefined;
	}

	return Math.floor(Number(match[1]) * SIZE_UNITS[unit as keyof typeof SIZE_UNITS]);
}
