/**
 * WWW-Authenticate (RFC 7235) as registries send it:
 *   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"
 *   Basic realm="Registry Realm"
 * A header may carry several challenges; parameters may be quoted (with
 * backslash escapes) or bare tokens.
 */
export type Challenge = {scheme: string; params: Record<string, string>};

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const WHITESPACE = /[ \t]*/y;

export function parseWwwAuthenticate(header: string | string[] | undefined): Challenge[] {
	const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
	return values.flatMap(value => parseOne(value));
}

function parseOne(input: string): Challenge[] {
	const challenges: Challenge[] = [];
	let position = 0;

	const skip = (pattern: RegExp) => {
		pattern.lastIndex = position;
		const match = pattern.exec(input);
		if (match) {
			position += match[0].length;
		}

		return match?.[0];
	};

	const skipSeparators = () => {
		while (position < input.length && (input[position] === ',' || input[position] === ' ' || input[position] === '\t')) {
			position++;
		}
	};

	const quoted = (): string | undefined => {
		if (input[position] !== '"') {
			return undefined;
		}

		let value = '';
		position++;
		while (position < input.length && input[position] !== '"') {
			if (input[position] === '\\' && position + 1 < input.length) {
				position++;
			}

			value += input[position];
			position++;
		}

		position++; // closing quote
		return value;
	};

	while (position < input.length) {
		skipSeparators();
		const scheme = skip(TOKEN);
		if (!scheme) {
			break;
		}

		const challenge: Challenge = {scheme: scheme.toLowerCase(), params: {}};
		challenges.push(challenge);
		skip(WHITESPACE);
		// auth-params: name = value, separated by commas, until the next scheme
		while (position < input.length) {
			const save = position;
			skipSeparators();
			const name = skip(TOKEN);
			skip(WHITESPACE);
			if (!name || input[position] !== '=') {
				position = save;
				break;
			}

			position++;
			skip(WHITESPACE);
			const value = quoted() ?? skip(TOKEN) ?? '';
			challenge.params[name.toLowerCase()] = value;
			skip(WHITESPACE);
			if (input[position] === ',') {
				position++;
			}
		}
	}

	return challenges;
}
