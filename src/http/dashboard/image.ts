/**
 * A repository's page (its tags with platforms and sizes, purge buttons for
 * cached content) and an image's page (the manifest or index, its platforms,
 * its layers with sizes and which other repositories share each layer).
 */
import {clientName, type Target} from '../../service/namespaces.js';
import {type ManifestRecord} from '../../store/metadata.js';
import {formatBytes} from '../../util/format.js';
import {RegistryError} from '../../v2/errors.js';
import {indexChildren, type Platform} from '../../v2/manifest.js';
import {parseReference} from '../../v2/grammar.js';
import {type MirrorContext} from '../state.js';
import {type DashboardDeps, mayPurge} from './deps.js';
import {href, html, page, section, sendPage, stringParameter, table, when, type Html} from './layout.js';

type Descriptor = {digest: string; size: number; mediaType?: string};

type Parsed = {kind: 'index'; children: Array<{digest: string; mediaType?: string; platform?: Platform; size?: number}>} | {kind: 'image'; config?: Descriptor; layers: Descriptor[]};

function parse(manifest: ManifestRecord): Parsed {
	let body: Record<string, unknown> = {};
	try {
		body = JSON.parse(manifest.content.toString('utf8')) as Record<string, unknown>;
	} catch {
		// shown as an image without layers
	}

	if (Array.isArray(body['manifests'])) {
		const sizes = new Map((body['manifests'] as Array<{digest?: unknown; size?: unknown}>).map(entry => [String(entry.digest), typeof entry.size === 'number' ? entry.size : undefined]));
		return {kind: 'index', children: indexChildren(body).map(child => ({...child, size: sizes.get(child.digest)}))};
	}

	const descriptor = (value: unknown): Descriptor | undefined => {
		const entry = value as {digest?: unknown; size?: unknown; mediaType?: unknown} | null;
		return entry && typeof entry.digest === 'string' ? {digest: entry.digest, size: typeof entry.size === 'number' ? entry.size : 0, mediaType: typeof entry.mediaType === 'string' ? entry.mediaType : undefined} : undefined;
	};

	const layers = Array.isArray(body['layers']) ? (body['layers'] as unknown[]).map(descriptor).filter(entry => entry !== undefined) : [];
	return {kind: 'image', config: descriptor(body['config']), layers};
}

export function platformName(platform: Platform | undefined): string {
	if (!platform) {
		return 'unknown';
	}

	return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/') || 'unknown';
}

/** What a manifest adds up to: its own bytes and its layers' (an index's: each cached child's). */
async function imageSize(deps: DashboardDeps, manifest: ManifestRecord, depth = 0): Promise<{bytes: number; platforms: string[]}> {
	const parsed = parse(manifest);
	if (parsed.kind === 'image') {
		return {bytes: manifest.content.length + (parsed.config?.size ?? 0) + parsed.layers.reduce((sum, layer) => sum + layer.size, 0), platforms: []};
	}

	let bytes = manifest.content.length;
	for (const child of depth === 0 ? parsed.children : []) {
		const stored = await deps.catalog.getManifest(child.digest);
		if (stored) {
			bytes += (await imageSize(deps, stored, depth + 1)).bytes;
		}
	}

	return {bytes, platforms: parsed.children.map(child => platformName(child.platform))};
}

/** An image's platform as the indexes that list it name it. */
async function platformsOf(deps: DashboardDeps, digest: string): Promise<string[]> {
	const names = new Set<string>();
	for (const parent of await deps.catalog.manifestParents(digest, 5)) {
		const stored = await deps.catalog.getManifest(parent);
		const parsed = stored && parse(stored);
		for (const child of parsed?.kind === 'index' ? parsed.children : []) {
			if (child.digest === digest) {
				names.add(platformName(child.platform));
			}
		}
	}

	return [...names];
}

function resolve(deps: DashboardDeps, name: string): Target | undefined {
	try {
		return deps.namespaces.resolve(name);
	} catch (error) {
		if (error instanceof RegistryError) {
			return undefined;
		}

		throw error;
	}
}

function notFound(ctx: MirrorContext, deps: DashboardDeps, what: string): void {
	sendPage(ctx, page({base: deps.prefix, title: 'Not found', body: html`<p class="notice">${what}</p>`, user: ctx.state.user}), 404);
}

function purgeButton(deps: DashboardDeps, name: string, tag: string | undefined, label: string): Html {
	return html`<form class="inline" method="get" action="${deps.prefix}/dashboard/purge"><input type="hidden" name="name" value="${name}">${tag === undefined ? undefined : html`<input type="hidden" name="tag" value="${tag}">`}<button class="danger" type="submit">${label}</button></form>`;
}

export function repository(deps: DashboardDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const name = stringParameter(ctx.query['name']);
		const target = resolve(deps, name);
		const tags = target ? await deps.catalog.repositoryTags(target.repo) : [];
		if (!target || tags.length === 0) {
			notFound(ctx, deps, `No tags of ${name || '(no name)'} are stored here.`);
			return;
		}

		const shown = clientName(target.repo, deps.rules);
		const purgeable = target.kind === 'cached' && mayPurge(deps, ctx.state.user);
		const rows: Html[][] = [];
		for (const tag of tags) {
			const manifest = await deps.catalog.getManifest(tag.digest);
			const size = manifest ? await imageSize(deps, manifest) : {bytes: 0, platforms: []};
			rows.push([
				html`<a href="${href(deps.prefix, '/dashboard/image', {name: shown, ref: tag.tag})}">${tag.tag}</a>`,
				html`<code>${tag.digest.slice(0, 19)}</code>`,
				html`${size.platforms.length > 0 ? size.platforms.join(', ') : 'single image'}`,
				html`${formatBytes(size.bytes)}`,
				html`${when(tag.fetchedAt)}`,
				purgeable ? purgeButton(deps, shown, tag.tag, 'Purge tag') : html``,
			]);
		}

		const kind = target.kind === 'cached' ? html`cached from ${target.upstream.name} (${target.upstream.url})` : html`pushed here: never purged or evicted`;
		const body = [
			html`<p id="kind">${kind} · ${deps.metrics.pulls.get(shown) ?? 0} pulls since start</p>`,
			section({id: 'tags-section', title: 'Tags', body: table(['tag', 'digest', 'platforms', 'size', 'fetched', ''], rows, 'no tags', 'tags')}),
			purgeable ? html`<div id="purge-repository">${purgeButton(deps, shown, undefined, 'Purge the whole repository')}</div>` : html``,
		];
		sendPage(ctx, page({base: deps.prefix, title: shown, body, user: ctx.state.user}));
	};
}

export function image(deps: DashboardDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const name = stringParameter(ctx.query['name']);
		const ref = stringParameter(ctx.query['ref'], 200);
		const target = resolve(deps, name);
		let reference;
		try {
			reference = parseReference(ref);
		} catch {
			reference = undefined;
		}

		const manifest =
			target && reference
				? reference.kind === 'tag'
					? (await deps.catalog.getTaggedManifest(target.repo, reference.tag))?.manifest
					: ((await deps.catalog.getRepoManifest(target.repo, reference.digest.value)) ?? (await deps.catalog.getManifest(reference.digest.value)))
				: undefined;
		if (!target || !manifest) {
			notFound(ctx, deps, `${name}:${ref} is not stored here.`);
			return;
		}

		const shown = clientName(target.repo, deps.rules);
		const parsed = parse(manifest);
		const platforms = parsed.kind === 'image' ? await platformsOf(deps, manifest.digest) : [];
		const facts = html`<table id="manifest"><tbody>
<tr><th>repository</th><td><a href="${href(deps.prefix, '/dashboard/repository', {name: shown})}">${shown}</a></td></tr>
<tr><th>reference</th><td>${ref}</td></tr>
<tr><th>digest</th><td><code>${manifest.digest}</code></td></tr>
<tr><th>media type</th><td>${manifest.mediaType}</td></tr>
<tr><th>kind</th><td>${parsed.kind === 'index' ? `index of ${parsed.children.length} manifests` : `image of ${parsed.layers.length} layers`}</td></tr>
${platforms.length > 0 ? html`<tr><th>platform</th><td id="platform">${platforms.join(', ')}</td></tr>` : undefined}
</tbody></table>`;
		const parts: Html[] = [facts];
		if (parsed.kind === 'index') {
			const rows: Html[][] = [];
			for (const child of parsed.children) {
				const stored = await deps.catalog.getManifest(child.digest);
				const size = stored ? await imageSize(deps, stored) : undefined;
				rows.push([
					html`${platformName(child.platform)}`,
					html`<a href="${href(deps.prefix, '/dashboard/image', {name: shown, ref: child.digest})}"><code>${child.digest.slice(0, 19)}</code></a>`,
					html`${child.mediaType ?? ''}`,
					html`${size ? formatBytes(size.bytes) : 'not cached'}`,
				]);
			}

			parts.push(section({id: 'platforms-section', title: 'Platforms', body: table(['platform', 'manifest', 'media type', 'size'], rows, 'no platforms', 'platforms')}));
		} else {
			const rows: Html[][] = [];
			const blobs = [...(parsed.config ? [{...parsed.config, role: 'config'}] : []), ...parsed.layers.map((layer, index) => ({...layer, role: `layer ${index + 1}`}))];
			for (const blob of blobs) {
				const stored = await deps.catalog.getBlob(blob.digest);
				const sharers = (await deps.catalog.blobRepositories(blob.digest, 21))
					.filter(repo => repo.registry !== target.repo.registry || repo.name !== target.repo.name)
					.map(repo => clientName(repo, deps.rules));
				rows.push([
					html`${blob.role}`,
					html`<code>${blob.digest.slice(0, 19)}</code>`,
					html`${formatBytes(blob.size)}`,
					html`${stored ? (stored.pushed ? 'pushed' : 'cached') : 'not cached'}`,
					sharers.length === 0
						? html`<span class="muted">none</span>`
						: html`${sharers.slice(0, 20).map((other, index) => html`${index > 0 ? ', ' : ''}<a href="${href(deps.prefix, '/dashboard/repository', {name: other})}">${other}</a>`)}${sharers.length > 20 ? ' …' : ''}`,
				]);
			}

			const total = blobs.reduce((sum, blob) => sum + blob.size, 0);
			parts.push(section({id: 'layers-section', title: `Layers (${formatBytes(total)})`, body: table(['', 'digest', 'size', 'stored', 'shared with'], rows, 'no layers', 'layers')}));
		}

		sendPage(ctx, page({base: deps.prefix, title: `${shown}${ref.includes(':') ? '@' : ':'}${ref}`, body: parts, user: ctx.state.user}));
	};
}
