/** Sizes for people: 1.5 MiB. */
export function formatBytes(bytes: number): string {
	const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let value = bytes;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit++;
	}

	return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A duration as config and flags write it: `1h`, `90m`, `30s`, `250ms` (the largest unit that divides it). */
export function formatDuration(ms: number): string {
	for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
		if (ms >= size && ms % size === 0) {
			return `${ms / size}${unit}`;
		}
	}

	return `${ms}ms`;
}
