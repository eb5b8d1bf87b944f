/**
 * What the HTTP handlers ask of a namespace. Cached (pull-through) and local
 * (pushed) namespaces implement the same read interface, so the handlers do
 * not know which one answers.
 */
import {type Target} from './namespaces.js';
import {type BlobResult as FillBlobResult} from '../fill/source.js';
import {type ManifestRecord} from '../store/metadata.js';
import {type Digest, type Reference} from '../v2/grammar.js';

export type ManifestResult = {
	manifest: ManifestRecord;
	/** Set when a stale copy was served because the upstream failed. */
	warning?: string;
	/**
	 * Until when (ms since the epoch) this answer stays right without asking
	 * again, unless the store's cache generation moves: Infinity for content
	 * by digest or a pushed tag, the TTL's end for a cached tag. Unset: do not repeat it.
	 */
	freshUntil?: number;
};

/** Local blobs are always stored; cached ones say where they came from. */
export type BlobResult = Omit<FillBlobResult, 'outcome'> & {outcome?: FillBlobResult['outcome']};

export type TagPage = {n?: number; last?: string};
export type TagList = {name: string; tags: string[]; next?: string};

export interface ReadService<T extends Target = Target> {
	getManifest(target: T, reference: Reference, accept: string[]): Promise<ManifestResult>;
	getBlob(target: T, digest: Digest): Promise<BlobResult>;
	statBlob(target: T, digest: Digest): Promise<number>;
	listTags(target: T, page: TagPage): Promise<TagList>;
}
