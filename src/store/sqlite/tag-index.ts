import {type PinRecord, type TagIndex, type TagSighting} from '../metadata.js';
import {SQL} from '../queries.js';
import {type SqliteDb} from './db.js';

/** Tag history and pins, on SQLite. */
export function tagIndex(db: SqliteDb): TagIndex {
	return {
		async recordTagSeen(repo, tag, digest, now) {
			db.transaction(() => {
				const latest = db.statement(SQL.latestSighting).get(repo.registry, repo.name, tag) as {id: number; digest: string} | undefined;
				if (latest?.digest === digest) {
					db.statement(SQL.extendSighting).run(now, latest.id, now);
				} else {
					db.statement(SQL.addSighting).run(repo.registry, repo.name, tag, digest, now, now);
				}
			}).immediate();
		},

		async tagHistory(repo, tag) {
			return db.statement(SQL.tagHistory).all(repo.registry, repo.name, tag) as TagSighting[];
		},

		async pinTag(repo, tag, digest, now, by) {
			db.transaction(() => {
				const repoId = db.ensureRepo(repo, now);
				db.statement(SQL.pinTagRow).run(repoId, tag, digest, now, now);
				db.statement(SQL.pin).run(repo.registry, repo.name, tag, digest, now, by);
			}).immediate();
		},

		async unpinTag(repo, tag) {
			return db.statement(SQL.unpin).run(repo.registry, repo.name, tag).changes > 0;
		},

		async getPin(repo, tag) {
			return db.statement(SQL.getPin).get(repo.registry, repo.name, tag) as PinRecord | undefined;
		},

		async listPins() {
			return db.statement(`${SQL.listPins} ORDER BY registry, name, tag`).all() as PinRecord[];
		},
	};
}
