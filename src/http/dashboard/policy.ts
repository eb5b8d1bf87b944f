/** The overview panel of the signature policy: decisions per upstream (from the counter), shown once there is one. */
import {type MirrorContext} from '../state.js';
import {type DashboardDeps} from './deps.js';
import {html, type Section, table} from './layout.js';

export async function policyPanel(_ctx: MirrorContext, deps: DashboardDeps): Promise<Section | undefined> {
	const {values} = await deps.metrics.policyDecisions.get();
	const byUpstream = new Map<string, {allowed: number; denied: number}>();
	for (const {labels, value} of values) {
		const entry = byUpstream.get(String(labels.upstream)) ?? {allowed: 0, denied: 0};
		entry[labels.decision === 'denied' ? 'denied' : 'allowed'] += value;
		byUpstream.set(String(labels.upstream), entry);
	}

	if (byUpstream.size === 0) {
		return undefined;
	}

	const rows = [...byUpstream].map(([upstream, counts]) => [
		html`${upstream}`,
		html`${counts.allowed}`,
		html`<span class="${counts.denied > 0 ? 'bad' : 'ok'}">${counts.denied}</span>`,
	]);
	return {id: 'policy-section', title: 'Signature policy', body: table(['upstream', 'allowed', 'denied'], rows, 'no decisions yet', 'policy')};
}
