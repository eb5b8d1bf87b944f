import {randomBytes} from 'node:crypto';
import {CreateBucketCommand, GetObjectCommand, PutObjectCommand} from '@aws-sdk/client-s3';
import test from 'ava';
import pg from 'pg';
import {s3ClientFor, startCeph} from '../helpers/ceph.js';
import {startPostgres} from '../helpers/postgres.js';

test('a throwaway Ceph answers an S3 PutObject/GetObject round trip byte for byte', async (t) => {
	const began = Date.now();
	const ceph = await startCeph();
	t.teardown(async () => ceph.stop());
	t.log(`ceph (mon, osd, radosgw, S3 user) started in ${Date.now() - began} ms at ${ceph.endpoint}`);
	t.regex(ceph.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);

	const s3 = s3ClientFor(ceph);
	t.teardown(() => {
		s3.destroy();
	});

	await s3.send(new CreateBucketCommand({Bucket: 'harness'}));
	const body = randomBytes(256 * 1024 + 7);
	const put = await s3.send(new PutObjectCommand({Bucket: 'harness', Key: 'blobs/one', Body: body, ContentType: 'application/octet-stream'}));
	t.truthy(put.ETag);
	const got = await s3.send(new GetObjectCommand({Bucket: 'harness', Key: 'blobs/one'}));
	t.is(got.ContentLength, body.length);
	t.is(got.ETag, put.ETag);
	const bytes = Buffer.from((await got.Body?.transformToByteArray()) ?? []);
	t.true(bytes.equals(body), 'GetObject returned different bytes');
});

test('a throwaway PostgreSQL answers SELECT 1, and createDatabase gives a fresh database', async (t) => {
	const began = Date.now();
	const postgres = await startPostgres();
	t.teardown(async () => postgres.stop());
	t.log(`postgres started in ${Date.now() - began} ms at ${postgres.url}`);
	t.regex(postgres.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);

	const client = new pg.Client({connectionString: postgres.url});
	await client.connect();
	t.teardown(async () => client.end());
	const one = await client.query<{one: number}>('SELECT 1 AS one');
	t.deepEqual(one.rows, [{one: 1}]);
	const connections = await client.query<{max_connections: string}>('SHOW max_connections');
	t.true(Number(connections.rows[0]?.max_connections) >= 100);

	const url = await postgres.createDatabase('mirror_meta');
	t.regex(url, /\/mirror_meta$/);
	const fresh = new pg.Client({connectionString: url});
	await fresh.connect();
	t.teardown(async () => fresh.end());
	await fresh.query('CREATE TABLE t (k text PRIMARY KEY, v bytea)');
	await fresh.query('INSERT INTO t VALUES ($1, $2)', ['a', Buffer.from([0, 1, 2, 255])]);
	const row = await fresh.query<{db: string; v: Buffer}>('SELECT current_database() AS db, v FROM t WHERE k = $1', ['a']);
	t.is(row.rows[0]?.db, 'mirror_meta');
	t.deepEqual(row.rows[0]?.v, Buffer.from([0, 1, 2, 255]));
});
