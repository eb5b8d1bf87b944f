import {type Catalog, type RepoKey, type RepositorySummary, type TagDetail} from '../metadata.js';
import {SQL, repositoryPageSql} from '../queries.js';
import {type PostgresDb} from './db.js';

/** The dashboard's listings and purges, on PostgreSQL (byte order for names and tags, as SQLite sorts). */
export function catalog(db: PostgresDb): Catalog {
	return {
		async repositoryPage(query) {
			const sql = repositoryPageSql(query, ' COLLATE "C"');
			const count = await db.row<{total: number}>(sql.count, sql.parameters);
			const rows = await db.rows<RepositorySummary>(sql.page, [...sql.parameters, query.limit, query.offset]);
			return {total: count?.total ?? 0, rows};
		},

		async repositoryTags(repo) {
			const repoId = await db.repoId(repo);
			if (repoId === undefined) {
				return [];
			}

			const rows = await db.rows<TagDetail>(SQL.repoTagDetails, [repoId]);
			return rows.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
		},

		async manifestParents(digest, limit) {
			return (await db.rows<{digest: string}>(SQL.manifestParents, [digest, limit])).map(row => row.digest);
		},

		async blobRepositories(digest, limit) {
			return db.rows<RepoKey>(SQL.blobRepositories, [digest, limit]);
		},

		async purge(repo, tag) {
			return db.transaction(async client => {
				const repoId = await db.repoId(repo, client);
				if (repoId === undefined) {
					return {tags: [], manifests: 0};
				}

				if (tag === undefined) {
					const tags = (await db.rows<{tag: string}>(SQL.repoTagsAll, [repoId], client)).map(row => row.tag).sort();
					await db.run(SQL.deleteRepoTags, [repoId], client);
					await db.run(SQL.deleteRepoReferrers, [repoId], client);
					const manifests = await db.run(SQL.deleteRepoManifestLinks, [repoId], client);
					await db.run(SQL.deleteRepoBlobLinks, [repoId], client);
					await db.run(SQL.deleteRepository, [repoId], client);
					return {tags, manifests};
				}

				const target = await db.row<{digest: string}>(SQL.tagTarget, [repoId, tag], client);
				if (!target) {
					return {tags: [], manifests: 0};
				}

				await db.run(SQL.deleteTag, [repoId, tag], client);
				const stillTagged = (await db.row(SQL.otherTagOf, [repoId, target.digest], client)) !== undefined;
				const manifests = stillTagged ? 0 : await db.run(SQL.unlinkManifest, [repoId, target.digest], client);
				return {tags: [tag], manifests};
			});
		},
	};
}
