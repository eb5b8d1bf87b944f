/** The overview panel of the signature policy: decisions per upstream since start (shown once there is one). */
import {type MirrorContext} from '../state.js';
import {type DashboardDeps} from './deps.js';
import {html, type Section, table} from './layout.js';

export async function policyPanel(_ctx: MirrorContext, deps: DashboardDeps): Promise<Section | undefined> {
	const rows = [...deps.metrics.decisions].map(([upstream, counts]) => [
		html`${upstream}`,
		html`${counts.allowed}`,
		html`<span class="${counts.denied > 0 ? 'bad' : 'ok'}">${counts.denied}</span>`,
	]);
	if (rows.length === 0) {
		return undefined;
	}

	return {id: 'policy-section', title: 'Signature policy', body: table(['upstream', 'allowed', 'denied'], rows, 'no decisions yet', 'policy')};
}
