/**
 * `promise`, or what `late()` gives (or throws) once `ms` passed without it.
 * A promise that comes too late still settles in the background; its failure
 * is dropped, since the caller has been answered already.
 */
export async function within<T>(promise: Promise<T>, ms: number, late: () => T): Promise<T> {
	const timedOut = Symbol('late');
	let timer: NodeJS.Timeout | undefined;
	const deadline = new Promise<typeof timedOut>(resolve => {
		timer = setTimeout(() => resolve(timedOut), ms);
	});
	try {
		const first = await Promise.race([promise, deadline]);
		if (first === timedOut) {
			promise.catch(() => undefined);
			return late();
		}

		return first;
	} finally {
		clearTimeout(timer);
	}
}
