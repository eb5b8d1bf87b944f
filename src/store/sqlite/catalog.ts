import {type Catalog, type RepoKey, type RepositorySummary, type TagDetail} from '../metadata.js';
import {SQL, repositoryPageSql} from '../queries.js';
import {type SqliteDb} from './db.js';

/** The dashboard's listings and purges, on SQLite. */
export function catalog(db: SqliteDb): Catalog {
	return {
		async repositoryPage(query) {
			const sql = repositoryPageSql(query, '');
			const {total} = db.statement(sql.count).get(...sql.parameters) as {total: number};
			const rows = db.statement(sql.page).all(...sql.parameters, query.limit, query.offset) as RepositorySummary[];
			return {total, rows};
		},

		async repositoryTags(repo) {
			const repoId = db.repoId(repo);
			if (repoId === undefined) {
				return [];
			}

			const rows = db.statement(SQL.repoTagDetails).all(repoId) as TagDetail[];
			return rows.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
		},

		async manifestParents(digest, limit) {
			return (db.statement(SQL.manifestParents).all(digest, limit) as Array<{digest: string}>).map(row => row.digest);
		},

		async blobRepositories(digest, limit) {
			return db.statement(SQL.blobRepositories).all(digest, limit) as RepoKey[];
		},

		async purge(repo, tag) {
			const repoId = db.repoId(repo);
			if (repoId === undefined) {
				return {tags: [], manifests: 0};
			}

			return db.transaction(() => {
				if (tag === undefined) {
					const tags = (db.statement(SQL.repoTagsAll).all(repoId) as Array<{tag: string}>).map(row => row.tag).sort();
					db.statement(SQL.deleteRepoTags).run(repoId);
					db.statement(SQL.deleteRepoReferrers).run(repoId);
					const manifests = db.statement(SQL.deleteRepoManifestLinks).run(repoId).changes;
					db.statement(SQL.deleteRepoBlobLinks).run(repoId);
					db.statement(SQL.deleteRepository).run(repoId);
					return {tags, manifests};
				}

				const target = db.statement(SQL.tagTarget).get(repoId, tag) as {digest: string} | undefined;
				if (!target) {
					return {tags: [], manifests: 0};
				}

				db.statement(SQL.deleteTag).run(repoId, tag);
				const stillTagged = db.statement(SQL.otherTagOf).get(repoId, target.digest) !== undefined;
				const manifests = stillTagged ? 0 : db.statement(SQL.unlinkManifest).run(repoId, target.digest).changes;
				return {tags: [tag], manifests};
			}).immediate();
		},
	};
}
