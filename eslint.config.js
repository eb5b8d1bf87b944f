// The linter, run in `npm test` (npm run lint): typescript-eslint's recommended
// rules with type information, over src/, test/ and bench/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
	{ignores: ['dist/', 'node_modules/', 'data/']},
	js.configs.recommended,
	...tseslint.configs.recommendedTypeChecked,
	{
		languageOptions: {
			parserOptions: {project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname},
		},
		rules: {
			// Streams and events are fire-and-forget by design in places; each such place says `void`.
			'@typescript-eslint/no-floating-promises': 'error',
			'@typescript-eslint/consistent-type-imports': ['error', {fixStyle: 'inline-type-imports'}],
			'@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', caughtErrors: 'none'}],
			// Store drivers keep the asynchronous interface with synchronous bodies (SQLite), and fakes in tests do the same.
			'@typescript-eslint/require-await': 'off',
			eqeqeq: ['error', 'always'],
			'no-var': 'error',
			'prefer-const': 'error',
		},
	},
	{
		files: ['**/*.js', '**/*.cjs'],
		extends: [tseslint.configs.disableTypeChecked],
		languageOptions: {parserOptions: {project: false, program: null}, globals: {module: 'writable', require: 'readonly', process: 'readonly'}},
	},
);
