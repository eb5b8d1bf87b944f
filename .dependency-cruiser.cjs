/**
 * The layering of src/, checked in `npm test` (npm run lint:deps).
 * A folder may import only folders on a lower layer (or itself); folders on
 * one layer do not import each other. So no import cycle between folders can
 * form, and a new one fails the check. Type-only imports count too.
 */
const LAYERS = [
	['v2', 'util', 'config'], // leaves: the protocol, helpers, configuration
	['store', 'upstream', 'ops', 'auth'], // drivers and clients
	['fill'], // blob layers: stored blobs, single-flight upstream fills
	['cluster', 'service'], // the cluster layer; namespaces and the read-service contract
	['policy'], // the signature policy: which manifests a namespace may serve
	['proxy', 'local'], // pull-through and local-namespace services
	['compose', 'http'], // the composition root; the HTTP edge (the only place Koa is known)
	['cli'], // commands
];

const rank = new Map(LAYERS.flatMap((folders, index) => folders.map(folder => [folder, index])));
const folders = [...rank.keys()];

const layering = folders.map(folder => {
	const allowed = folders.filter(other => other === folder || rank.get(other) < rank.get(folder));
	return {
		name: `layers-${folder}`,
		comment: `src/${folder}/ may import only ${allowed.join(', ')} (see LAYERS in .dependency-cruiser.cjs)`,
		severity: 'error',
		from: {path: `^src/${folder}/`},
		to: {path: '^src/', pathNot: `^src/(${allowed.join('|')})/`},
	};
});

module.exports = {
	forbidden: [
		{
			name: 'no-circular',
			comment: 'No import cycles, between files or folders (type imports included).',
			severity: 'error',
			from: {path: '^src/'},
			to: {circular: true},
		},
		{
			name: 'koa-only-in-http',
			comment: 'Nothing below http/ knows Koa: services take and return plain values.',
			severity: 'error',
			from: {path: '^src/', pathNot: '^src/(http|cli)/'},
			to: {path: 'node_modules/(koa|@koa/)'},
		},
		{
			name: 'folders-only',
			comment: 'Every module of src/ lives in a folder of LAYERS; only main.ts sits at the top.',
			severity: 'error',
			from: {path: '^src/'},
			to: {path: '^src/[^/]+$', pathNot: '^src/main\\.ts$'},
		},
		{
			name: 'known-folders',
			comment: 'A new folder under src/ needs its place in LAYERS.',
			severity: 'error',
			from: {path: '^src/'},
			to: {path: '^src/[^/]+/', pathNot: `^src/(${folders.join('|')})/`},
		},
		...layering,
	],
	options: {
		doNotFollow: {path: 'node_modules'},
		tsPreCompilationDeps: true,
		tsConfig: {fileName: 'tsconfig.json'},
		enhancedResolveOptions: {exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js']},
	},
};
