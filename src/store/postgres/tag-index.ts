import {type PinRecord, type TagIndex, type TagSighting} from '../metadata.js';
import {SQL} from '../queries.js';
import {type PostgresDb} from './db.js';

/** Tag history and pins, on PostgreSQL. */
export function tagIndex(db: PostgresDb): TagIndex {
	return {
		async recordTagSeen(repo, tag, digest, now) {
			await db.transaction(async client => {
				// Replicas recording the same tag at once take turns, so a moved tag starts one new sighting, not two.
				await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tag_history\n${repo.registry}\n${repo.name}\n${tag}`]);
				const latest = await db.row<{id: number; digest: string}>(SQL.latestSighting, [repo.registry, repo.name, tag], client);
				await (latest?.digest === digest
					? db.run(SQL.extendSighting, [now, latest.id, now], client)
					: db.run(SQL.addSighting, [repo.registry, repo.name, tag, digest, now, now], client));
			});
		},

		async tagHistory(repo, tag) {
			return db.rows<TagSighting>(SQL.tagHistory, [repo.registry, repo.name, tag]);
		},

		async pinTag(repo, tag, digest, now, by) {
			await db.transaction(async client => {
				const repoId = await db.ensureRepo(repo, now, client);
				await db.run(SQL.pinTagRow, [repoId, tag, digest, now, now], client);
				await db.run(SQL.pin, [repo.registry, repo.name, tag, digest, now, by], client);
			});
		},

		async unpinTag(repo, tag) {
			return (await db.run(SQL.unpin, [repo.registry, repo.name, tag])) > 0;
		},

		async getPin(repo, tag) {
			return db.row<PinRecord>(SQL.getPin, [repo.registry, repo.name, tag]);
		},

		async listPins() {
			return db.rows<PinRecord>(`${SQL.listPins} ORDER BY registry COLLATE "C", name COLLATE "C", tag COLLATE "C"`);
		},
	};
}
