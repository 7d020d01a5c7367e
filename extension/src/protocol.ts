/**
 * The message protocol between this extension and the kernel (comm target `labkit.handoff`).
 *
 * The constants and payload types come from `generated/contract.ts`, which
 * `scripts/gen_schema.py` writes from the Python side (`labkit/notebook/protocol.py`,
 * `labkit/request.py`); nothing here is a hand copy. Every message is an envelope carrying
 * the protocol version; each side refuses the other's messages when the versions differ.
 */

import {
  IErrorInfo,
  IProgressEvent,
  IResultVariant,
  PROTOCOL_VERSION,
  RequestType,
  STAGE_STATUSES,
  StageStatus
} from './generated/contract';

export {
  BUNDLE_NAME_RE,
  COMM_TARGET,
  EXPERIMENT_MIME,
  JUDGED_ON_WORDS,
  PROTOCOL_VERSION,
  STAGES,
  STAGE_STATUSES
} from './generated/contract';
export type {
  IBundleSummary,
  IBundlesReply,
  IDiffReply,
  IErrorInfo,
  IExperimentOutput,
  IExperimentTrial,
  IHandoffEvent,
  IHandoffReply,
  IHandoffRequest,
  IHandoffResult,
  IManifest,
  IModelInfo,
  IModelsReply,
  IProgressEvent,
  IReportReply,
  IRequestOptions,
  IResultVariant,
  ITrialHandoffRequest,
  ITrialRow,
  RequestType,
  Stage,
  StageStatus
} from './generated/contract';

export interface IRequest {
  protocol: number;
  kind: 'request';
  id: string;
  type: RequestType;
  payload: Record<string, unknown>;
}

export type KernelMessage =
  | { protocol: number; kind: 'progress'; id: string; payload: IProgressEvent }
  | {
      protocol: number;
      kind: 'reply';
      id: string | null;
      ok: true;
      payload: Record<string, unknown>;
    }
  | {
      protocol: number;
      kind: 'reply';
      id: string | null;
      ok: false;
      error: IErrorInfo;
    };

/** A variant as a handoff result lists it (the manifest's variant and its speed-up). */
export type IVariant = IResultVariant;

/** A message that does not follow the protocol, or speaks another version of it. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

let counter = 0;

export function makeRequest(
  type: RequestType,
  payload: Record<string, unknown> = {},
  id?: string
): IRequest {
  counter += 1;
  return {
    protocol: PROTOCOL_VERSION,
    kind: 'request',
    id: id ?? `r${Date.now().toString(36)}-${counter}`,
    type,
    payload
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validate a message from the kernel; throws ProtocolError saying what is wrong. */
export function parseKernelMessage(data: unknown): KernelMessage {
  if (!isObject(data)) {
    throw new ProtocolError('kernel message is not a JSON object');
  }
  if (data.protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `the kernel's labkit speaks protocol version ${JSON.stringify(
        data.protocol
      )}, this extension speaks ${PROTOCOL_VERSION}: install matching versions of labkit ` +
        'and its JupyterLab extension, then restart the kernel and reload the page'
    );
  }
  const id = data.id;
  if (data.kind === 'progress') {
    const p = data.payload;
    if (typeof id !== 'string' || !isObject(p) || typeof p.stage !== 'string') {
      throw new ProtocolError('malformed progress message');
    }
    const status = (STAGE_STATUSES as readonly string[]).includes(
      String(p.status)
    )
      ? (p.status as StageStatus)
      : 'info';
    return {
      protocol: PROTOCOL_VERSION,
      kind: 'progress',
      id,
      payload: {
        stage: p.stage,
        status,
        message: typeof p.message === 'string' ? p.message : '',
        fraction: typeof p.fraction === 'number' ? p.fraction : null,
        elapsed_s: typeof p.elapsed_s === 'number' ? p.elapsed_s : null
      }
    };
  }
  if (data.kind === 'reply') {
    if (id !== null && typeof id !== 'string') {
      throw new ProtocolError('reply id must be a string or null');
    }
    if (data.ok === true && isObject(data.payload)) {
      return {
        protocol: PROTOCOL_VERSION,
        kind: 'reply',
        id,
        ok: true,
        payload: data.payload
      };
    }
    const e = data.error;
    if (data.ok === false && isObject(e) && typeof e.message === 'string') {
      return {
        protocol: PROTOCOL_VERSION,
        kind: 'reply',
        id,
        ok: false,
        error: {
          type: typeof e.type === 'string' ? e.type : 'Error',
          message: e.message,
          stage: typeof e.stage === 'string' ? e.stage : null
        }
      };
    }
    throw new ProtocolError(
      'malformed reply: needs ok=true with payload or ok=false with error'
    );
  }
  throw new ProtocolError(`unknown message kind ${JSON.stringify(data.kind)}`);
}
