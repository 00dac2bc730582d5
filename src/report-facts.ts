// What the post step found out about the job, as the facts the report renders: a pure mapping, so what the
// report says follows from what post gathered and nothing else.
import { aroundTheCache } from './around-the-cache.js';
import type { Inputs } from './context.js';
import type { Quota } from './docker-hub.js';
import { DOCKER_HUB } from './images.js';
import type { BackgroundRestoreFacts } from './background-restore.js';
import type { Restored, Saved } from './persistence.js';
import type { PrefetchUsage } from './prefetch.js';
import type { Pruned } from './prune.js';
import type { RegistryRow, ReportFacts } from './report.js';
import type { MirrorState } from './state.js';
import type { SaveDecision } from './upstream-check.js';
import { suggestedMaxSize, type Thrash } from './thrash.js';
import { mergeUsage, type Usage } from './usage.js';
import type { Baseline } from './work-dir.js';

/** What post gathered: each part null where it could not be learnt. */
export interface JobOutcome {
  inputs: Pick<Inputs, 'upstream' | 'save' | 'maxSize' | 'maxAgeDays'>;
  /** What the cache held when the job started. */
  baseline: Baseline;
  /** What the restore came to (main's selection and the background restore's outcome). */
  restored: Restored;
  background: BackgroundRestoreFacts | null;
  mirrors: MirrorState[];
  /** What the job pulled through each mirror, in the order of `mirrors`. */
  usages: Usage[] | null;
  decision: Pick<SaveDecision, 'withheld' | 'stale' | 'unverified'>;
  saved: Saved | null;
  /** What pruning came to: null without a github-token. */
  pruned?: Pruned | null;
  quota: Quota | 'unlimited' | null;
  prefetch: PrefetchUsage | null;
  unpigz: boolean;
  /** What dockerd pulled during the job, by image name. */
  pulled: string[];
  /** Registries other than Docker Hub that dockerd reaches through a hosts.toml of ours. */
  viaHostsToml: string[];
  /** Why dockerd's own BuildKit goes around the cache; empty when it does not. */
  builtInBuildkit: string;
  problems: string[];
}

export function reportFacts(o: JobOutcome): ReportFacts {
  const { restored } = o;
  const present = new Set([...Object.keys(o.baseline.storage.blobs), ...restored.present]);
  return {
    upstream: o.inputs.upstream,
    registries: registryRows(o.mirrors, o.usages),
    usage: o.usages ? mergeUsage(o.usages) : null,
    restoredKey: restored.restoredKey,
    indexLimited: restored.indexLimited ?? '',
    indexLateSeconds: restored.indexLate ? Math.max(0, Math.round((restored.indexLate.at - o.baseline.started) / 1000)) : null,
    restoredBlobs: present.size,
    restoredBytes: [...present].reduce((sum, d) => sum + (o.baseline.storage.blobs[d] ?? restored.index?.blobs[d] ?? 0), 0),
    background: o.background,
    missingEntries: restored.missingEntries,
    damagedBlobs: restored.damaged.length,
    refused: restored.refused,
    dropped: restored.dropped,
    budget: { maxBytes: o.inputs.maxSize, maxAgeDays: o.inputs.maxAgeDays },
    saved: o.saved && {
      entries: o.saved.entries.length,
      bytes: o.saved.bytes,
      indexKey: o.saved.indexKey,
      deferred: o.saved.deferred,
      stopped: o.saved.stopped,
      leftToOthers: o.saved.leftToOthers,
      heldBack: o.saved.heldBack,
      withheld: o.saved.withheld,
    },
    thrash: restored.thrash ? thrashFacts(restored.thrash) : null,
    pruned: o.pruned ?? null,
    saveDisabled: !o.inputs.save,
    withheld: o.decision.withheld,
    stale: o.decision.stale,
    unverified: o.decision.unverified,
    quota: o.quota,
    pullsAs: o.mirrors.find((m) => m.registry === DOCKER_HUB)?.pullsAs ?? '',
    prefetch: o.prefetch,
    unpigz: o.unpigz,
    aroundTheCache: aroundTheCache(o.pulled, o.mirrors, o.viaHostsToml),
    builtInBuildkit: o.builtInBuildkit,
    problems: o.problems,
  };
}

/** What the report says of thrash: the figures, when the blobs are saved again, and the max-size that would fit. */
function thrashFacts(thrash: Thrash): ReportFacts['thrash'] {
  return { evicted: thrash.evicted, survivedBytes: thrash.survivedBytes, suggested: suggestedMaxSize(thrash), until: thrash.until };
}

/** Each mirror and what the job pulled through it. */
function registryRows(mirrors: MirrorState[], usages: Usage[] | null): RegistryRow[] {
  const none = { blobs: 0, bytes: 0 };
  return mirrors.map((m, i) => ({
    registry: m.registry,
    upstream: m.upstream,
    mirror: m.url,
    offline: m.offline,
    images: usages?.[i].images.filter((u) => u.key).length ?? 0,
    fromCache: usages?.[i].fromCache ?? none,
    fromUpstream: usages?.[i].fromUpstream ?? none,
  }));
}
