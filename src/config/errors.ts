/** One line, naming the key: what a person sees when start-up fails. */
export class ConfigError extends Error {
	override name = 'ConfigError';
	readonly code = 'ERR_CONFIG';
}
