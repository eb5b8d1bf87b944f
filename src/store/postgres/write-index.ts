import {type WriteIndex} from '../metadata.js';
import {SQL, referrerParams} from '../queries.js';
import {type PostgresDb} from './db.js';

/** What fills and pushes record, on PostgreSQL: each write that touches several rows is one transaction. */
export function writeIndex(db: PostgresDb): WriteIndex {
	return {
		async putManifest(input) {
			const {repo, manifest, tag, pushed, now} = input;
			await db.transaction(async client => {
				const repoId = await db.ensureRepo(repo, now, client);
				await db.run(
					`INSERT INTO manifests (digest, media_type, size, content, pushed, created_at, last_access)
					 VALUES (?, ?, ?, ?, ?, ?, ?)
					 ON CONFLICT (digest) DO UPDATE
					 SET pushed = GREATEST(manifests.pushed, excluded.pushed), last_access = GREATEST(manifests.last_access, excluded.last_access)`,
					[manifest.digest, manifest.mediaType, manifest.content.length, manifest.content, pushed ? 1 : 0, now, now],
					client,
				);
				await db.run(SQL.linkManifest, [repoId, manifest.digest], client);
				const references = input.references ?? [];
				if (references.length > 0) {
					await db.run(
						`INSERT INTO manifest_references (manifest_digest, reference_digest)
						 SELECT ?, unnest(?::text[]) ON CONFLICT DO NOTHING`,
						[manifest.digest, references],
						client,
					);
				}

				if (tag !== undefined) {
					await db.run(
						SQL.setTag,
						[repoId, tag, manifest.digest, now, now],
						client,
					);
				}
			});
		},

		async markTagChecked(repo, tag, now) {
			await db.run(
				SQL.markTagChecked,
				[now, tag, repo.registry, repo.name],
			);
		},

		async putBlob(repo, blob) {
			await db.transaction(async client => {
				const repoId = await db.ensureRepo(repo, blob.now, client);
				await db.run(
					`INSERT INTO blobs (digest, size, pushed, created_at, last_access) VALUES (?, ?, ?, ?, ?)
					 ON CONFLICT (digest) DO UPDATE
					 SET pushed = GREATEST(blobs.pushed, excluded.pushed), last_access = GREATEST(blobs.last_access, excluded.last_access)`,
					[blob.digest, blob.size, blob.pushed ? 1 : 0, blob.now, blob.now],
					client,
				);
				await db.run('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING', [repoId, blob.digest], client);
			});
		},

		async linkBlob(repo, digest) {
			if ((await db.row(SQL.blob, [digest])) === undefined) {
				return; // nothing to link: the blob is not in the store
			}

			await db.transaction(async client => {
				const repoId = await db.ensureRepo(repo, Date.now(), client);
				// The blob may have been deleted since: the foreign key would refuse the link, so insert only if it exists.
				await db.run(
					'INSERT INTO repository_blobs (repository_id, digest) SELECT ?, digest FROM blobs WHERE digest = ? ON CONFLICT DO NOTHING',
					[repoId, digest],
					client,
				);
			});
		},

		async deleteBlobRecord(digest) {
			await db.run(SQL.deleteBlob, [digest]);
		},

		async putReferrer(repo, subject, referrer) {
			await db.transaction(async client => {
				const repoId = await db.ensureRepo(repo, Date.now(), client);
				await db.run(SQL.putReferrer, referrerParams(repoId, subject, referrer), client);
			});
		},

		async deleteTag(repo, tag) {
			const repoId = await db.repoId(repo);
			return repoId !== undefined && (await db.run(SQL.deleteTag, [repoId, tag])) > 0;
		},

		async deleteRepoManifest(repo, digest) {
			const repoId = await db.repoId(repo);
			if (repoId === undefined) {
				return false;
			}

			return db.transaction(async client => {
				const removed = await db.run(SQL.unlinkManifest, [repoId, digest], client);
				await db.run(SQL.deleteRepoTagsOf, [repoId, digest], client);
				await db.run(SQL.deleteRepoReferrer, [repoId, digest], client);
				return removed > 0;
			});
		},

		async unlinkBlob(repo, digest) {
			const repoId = await db.repoId(repo);
			return repoId !== undefined && (await db.run(SQL.unlinkBlob, [repoId, digest])) > 0;
		},
	};
}
