/**
 * Panels of the overview page that other features add: a function that
 * renders one section (or nothing) for a request. To add one, write it in its
 * own module and list it in OVERVIEW_PANELS; it is rendered after the
 * overview's own sections, in this order.
 */
import {type MirrorContext} from '../state.js';
import {type DashboardDeps} from './deps.js';
import {type Section} from './layout.js';
import {policyPanel} from './policy.js';

export type Panel = (ctx: MirrorContext, deps: DashboardDeps) => Promise<Section | undefined>;

export const OVERVIEW_PANELS: readonly Panel[] = [policyPanel];
