/**
 * The one module that talks to the kernel.
 *
 * It depends on a structural subset of JupyterLab's kernel connection (IKernelLike), so unit
 * tests hand it a fake at exactly this seam.
 */

import {
  COMM_TARGET,
  IErrorInfo,
  IProgressEvent,
  KernelMessage,
  ProtocolError,
  RequestType,
  makeRequest,
  parseKernelMessage
} from './protocol';

export interface IFutureLike {
  done: Promise<any>;
}

export interface ICommLike {
  open(data?: any): IFutureLike;
  send(data: any): IFutureLike;
  close(data?: any): IFutureLike;
  onMsg: (msg: any) => void | PromiseLike<void>;
  onClose: (msg: any) => void | PromiseLike<void>;
  readonly isDisposed: boolean;
}

export interface IKernelLike {
  requestExecute(content: {
    code: string;
    silent?: boolean;
    store_history?: boolean;
    user_expressions?: Record<string, string>;
    allow_stdin?: boolean;
    stop_on_error?: boolean;
  }): IFutureLike;
  createComm(targetName: string, commId?: string): ICommLike;
}

export type ProbeState = 'no-kernel' | 'not-imported' | 'ready';

/** A failed request: `type` is the Python error class (or ProtocolError), `stage` if any. */
export class HandoffError extends Error implements IErrorInfo {
  readonly type: string;
  readonly stage: string | null;
  constructor(info: IErrorInfo) {
    super(info.message);
    this.name = 'HandoffError';
    this.type = info.type;
    this.stage = info.stage ?? null;
  }
}

interface IPending {
  resolve: (payload: Record<string, unknown>) => void;
  reject: (err: Error) => void;
  onProgress?: (p: IProgressEvent) => void;
}

const LOADED = "'labkit' in __import__('sys').modules";
const REGISTER = "__import__('labkit.notebook').notebook._autoregister()";

/** Evaluate expressions silently: no cell, no output, no execution count in the notebook. */
export async function evaluateSilently(
  kernel: IKernelLike,
  expressions: Record<string, string>
): Promise<Record<string, string>> {
  const reply = await kernel.requestExecute({
    code: '',
    silent: true,
    store_history: false,
    user_expressions: expressions,
    allow_stdin: false,
    stop_on_error: false
  }).done;
  const content = reply?.content ?? {};
  if (content.status !== 'ok') {
    throw new HandoffError({
      type: 'KernelError',
      message: `the kernel could not evaluate a check (${content.ename ?? content.status})`,
      stage: null
    });
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(content.user_expressions ?? {})) {
    const v = value as any;
    out[key] =
      v?.status === 'ok'
        ? String(v.data?.['text/plain'] ?? '')
        : `error: ${v?.ename ?? ''}`;
  }
  return out;
}

export class HandoffClient {
  private _comm: ICommLike | null = null;
  private _pending = new Map<string, IPending>();

  constructor(private readonly _kernel: IKernelLike | null | undefined) {}

  /** Whether there is a kernel, and whether it has imported labkit (then registers the comm). */
  async probe(): Promise<ProbeState> {
    if (!this._kernel) {
      return 'no-kernel';
    }
    const first = await evaluateSilently(this._kernel, { loaded: LOADED });
    if (first.loaded !== 'True') {
      return 'not-imported';
    }
    const second = await evaluateSilently(this._kernel, {
      registered: REGISTER
    });
    if (second.registered !== 'True') {
      throw new HandoffError({
        type: 'KernelError',
        message:
          'labkit is imported but its kernel link could not start ' +
          `(${second.registered}); restart the kernel and import labkit again`,
        stage: null
      });
    }
    return 'ready';
  }

  /** Send one request; resolves with the reply payload, rejects with HandoffError. */
  request<T = Record<string, unknown>>(
    type: RequestType,
    payload: Record<string, unknown> = {},
    onProgress?: (p: IProgressEvent) => void
  ): Promise<T> {
    const comm = this._open();
    const req = makeRequest(type, payload);
    return new Promise<T>((resolve, reject) => {
      this._pending.set(req.id, {
        resolve: p => resolve(p as T),
        reject,
        onProgress
      });
      comm.send(req).done.catch((err: unknown) => {
        this._settle(req.id, null, new HandoffError(asInfo(err)));
      });
    });
  }

  dispose(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      comm.close().done.catch(() => undefined);
    }
    this._failAll('the connection to the kernel was closed');
  }

  private _open(): ICommLike {
    if (this._comm && !this._comm.isDisposed) {
      return this._comm;
    }
    if (!this._kernel) {
      throw new HandoffError({
        type: 'NoKernel',
        message: 'no kernel is running',
        stage: null
      });
    }
    const comm = this._kernel.createComm(COMM_TARGET);
    comm.onMsg = msg => this._onMessage(msg?.content?.data);
    comm.onClose = () => {
      this._comm = null;
      this._failAll(
        'the kernel closed the labkit connection (kernel restarted, or labkit not imported)'
      );
    };
    comm
      .open({})
      .done.catch((err: unknown) => this._failAll(asInfo(err).message));
    this._comm = comm;
    return comm;
  }

  private _onMessage(data: unknown): void {
    let msg: KernelMessage;
    try {
      msg = parseKernelMessage(data);
    } catch (err) {
      const id = (data as any)?.id;
      const info = {
        type: 'ProtocolError',
        message: (err as Error).message,
        stage: null
      };
      if (typeof id === 'string' && this._pending.has(id)) {
        this._settle(id, null, new HandoffError(info));
      } else {
        this._failAll(info.message, 'ProtocolError');
      }
      return;
    }
    if (msg.kind === 'progress') {
      this._pending.get(msg.id)?.onProgress?.(msg.payload);
      return;
    }
    if (msg.id === null) {
      const info = msg.ok ? null : msg.error;
      this._failAll(
        info?.message ?? 'reply without id',
        info?.type ?? 'ProtocolError'
      );
      return;
    }
    this._settle(
      msg.id,
      msg.ok ? msg.payload : null,
      msg.ok ? null : new HandoffError(msg.error)
    );
  }

  private _settle(
    id: string,
    payload: Record<string, unknown> | null,
    err: Error | null
  ): void {
    const pending = this._pending.get(id);
    if (!pending) {
      return;
    }
    this._pending.delete(id);
    if (err) {
      pending.reject(err);
    } else {
      pending.resolve(payload ?? {});
    }
  }

  private _failAll(message: string, type = 'KernelError'): void {
    const all = [...this._pending.values()];
    this._pending.clear();
    for (const p of all) {
      p.reject(new HandoffError({ type, message, stage: null }));
    }
  }
}

function asInfo(err: unknown): IErrorInfo {
  if (err instanceof HandoffError) {
    return { type: err.type, message: err.message, stage: err.stage };
  }
  if (err instanceof ProtocolError) {
    return { type: 'ProtocolError', message: err.message, stage: null };
  }
  return {
    type: 'KernelError',
    message: String((err as any)?.message ?? err),
    stage: null
  };
}
