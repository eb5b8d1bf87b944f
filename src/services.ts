/**
 * What the HTTP handlers ask of a namespace. Cached (pull-through) and local
 * (pushed) namespaces implement the same read interface, so the handlers do
 * not know which one answers.
 */
import {type Readable} from 'node:stream';
import {type Target} from './namespaces.js';
import {type ByteRange} from './store/blob-store.js';
import {type ManifestRecord} from './store/metadata.js';
import {type Digest, type Reference} from './v2/grammar.js';

export type ManifestResult = {
	manifest: ManifestRecord;
	/** Set when a stale copy was served because the upstream failed. */
	warning?: string;
};

export type BlobResult = {
	/** Unknown only for an uncached blob whose upstream sent no Content-Length. */
	size: number | undefined;
	open(range?: ByteRange): Readable;
	/** The bytes are in the blob store (not a fill in progress), so a client may be redirected to them. */
	stored?: boolean;
};

export type TagPage = {n?: number; last?: string};
export type TagList = {name: string; tags: string[]; next?: string};

export interface ReadService<T extends Target = Target> {
	getManifest(target: T, reference: Reference, accept: string[]): Promise<ManifestResult>;
	getBlob(target: T, digest: Digest): Promise<BlobResult>;
	statBlob(target: T, digest: Digest): Promise<number>;
	listTags(target: T, page: TagPage): Promise<TagList>;
}
