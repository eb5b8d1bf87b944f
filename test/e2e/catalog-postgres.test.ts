import test from 'ava';
import {PostgresMetadataStore} from '../../src/store/postgres/index.js';
import {catalogCases} from '../helpers/catalog-cases.js';
import {type Postgres, startPostgres} from '../helpers/postgres.js';

let server: Promise<Postgres> | undefined;
let databases = 0;
test.after.always(async () => (await server)?.stop());

catalogCases(test, 'postgres', async t => {
	server ??= startPostgres();
	const store = await PostgresMetadataStore.open(await (await server).createDatabase(`catalog${++databases}`));
	t.teardown(async () => store.close());
	return store;
});
