import { HandoffClient, HandoffError, ICommLike, IKernelLike } from '../kernel';
import { IProgressEvent, PROTOCOL_VERSION } from '../protocol';

/** A fake kernel connection at the seam kernel.ts depends on. */
class FakeComm implements ICommLike {
  onMsg: (msg: any) => void = () => undefined;
  onClose: (msg: any) => void = () => undefined;
  isDisposed = false;
  sent: any[] = [];
  opened = false;
  constructor(private _respond: (comm: FakeComm, data: any) => void) {}
  open(): { done: Promise<any> } {
    this.opened = true;
    return { done: Promise.resolve() };
  }
  send(data: any): { done: Promise<any> } {
    this.sent.push(data);
    setTimeout(() => this._respond(this, data), 0);
    return { done: Promise.resolve() };
  }
  close(): { done: Promise<any> } {
    this.isDisposed = true;
    return { done: Promise.resolve() };
  }
  deliver(data: any): void {
    this.onMsg({ content: { data } });
  }
}

class FakeKernel implements IKernelLike {
  executed: any[] = [];
  comms: FakeComm[] = [];
  constructor(
    private _expressions: Record<string, string>,
    private _respond: (comm: FakeComm, data: any) => void = () => undefined,
    private _status = 'ok'
  ) {}
  requestExecute(content: any): { done: Promise<any> } {
    this.executed.push(content);
    const user_expressions: Record<string, any> = {};
    for (const key of Object.keys(content.user_expressions ?? {})) {
      user_expressions[key] = {
        status: 'ok',
        data: { 'text/plain': this._expressions[key] }
      };
    }
    return {
      done: Promise.resolve({
        content: { status: this._status, user_expressions }
      })
    };
  }
  createComm(target: string): ICommLike {
    expect(target).toBe('labkit.handoff');
    const comm = new FakeComm(this._respond);
    this.comms.push(comm);
    return comm;
  }
}

const v = PROTOCOL_VERSION;

describe('HandoffClient.probe', () => {
  it('reports a missing kernel', async () => {
    expect(await new HandoffClient(null).probe()).toBe('no-kernel');
  });

  it('reports labkit not imported, using silent execution only', async () => {
    const kernel = new FakeKernel({ loaded: 'False' });
    expect(await new HandoffClient(kernel).probe()).toBe('not-imported');
    expect(kernel.executed).toHaveLength(1);
    expect(kernel.executed[0]).toMatchObject({
      code: '',
      silent: true,
      store_history: false
    });
  });

  it('registers the comm target when labkit is loaded', async () => {
    const kernel = new FakeKernel({ loaded: 'True', registered: 'True' });
    expect(await new HandoffClient(kernel).probe()).toBe('ready');
    expect(kernel.executed[1].user_expressions.registered).toMatch(
      /_autoregister/
    );
  });

  it('fails clearly when registration fails or execution errors', async () => {
    const bad = new FakeKernel({ loaded: 'True', registered: 'False' });
    await expect(new HandoffClient(bad).probe()).rejects.toThrow(
      /could not start/
    );
    const broken = new FakeKernel({ loaded: 'True' }, undefined, 'error');
    await expect(new HandoffClient(broken).probe()).rejects.toThrow(
      HandoffError
    );
  });
});

describe('HandoffClient.request', () => {
  it('streams progress, then resolves with the reply payload', async () => {
    const kernel = new FakeKernel({}, (comm, req) => {
      comm.deliver({
        protocol: v,
        kind: 'progress',
        id: req.id,
        payload: { stage: 'export', status: 'start', message: 'exporting' }
      });
      comm.deliver({
        protocol: v,
        kind: 'reply',
        id: req.id,
        ok: true,
        payload: { n: 1 }
      });
    });
    const client = new HandoffClient(kernel);
    const seen: IProgressEvent[] = [];
    const payload = await client.request('handoff', { quantize: false }, p =>
      seen.push(p)
    );
    expect(payload).toEqual({ n: 1 });
    expect(seen.map(p => p.stage)).toEqual(['export']);
    const sent = kernel.comms[0].sent[0];
    expect(sent).toMatchObject({
      protocol: v,
      kind: 'request',
      type: 'handoff'
    });
    expect(kernel.comms[0].opened).toBe(true);
  });

  it('rejects with the stage and message of a failed handoff', async () => {
    const kernel = new FakeKernel({}, (comm, req) =>
      comm.deliver({
        protocol: v,
        kind: 'reply',
        id: req.id,
        ok: false,
        error: {
          type: 'ExportError',
          message: 'unsupported op',
          stage: 'export'
        }
      })
    );
    const err = await new HandoffClient(kernel)
      .request('handoff')
      .catch(e => e);
    expect(err).toBeInstanceOf(HandoffError);
    expect(err).toMatchObject({
      type: 'ExportError',
      stage: 'export',
      message: 'unsupported op'
    });
  });

  it('rejects replies of another protocol version', async () => {
    const kernel = new FakeKernel({}, (comm, req) =>
      comm.deliver({
        protocol: PROTOCOL_VERSION + 1,
        kind: 'reply',
        id: req.id,
        ok: true,
        payload: {}
      })
    );
    await expect(
      new HandoffClient(kernel).request('hello')
    ).rejects.toMatchObject({
      type: 'ProtocolError'
    });
  });

  it('fails pending requests when the kernel closes the comm', async () => {
    const kernel = new FakeKernel({}, comm => comm.onClose({}));
    await expect(
      new HandoffClient(kernel).request('list_models')
    ).rejects.toThrow(/closed the labkit connection/);
  });

  it('routes replies by id and reuses one comm', async () => {
    const kernel = new FakeKernel({}, (comm, req) =>
      comm.deliver({
        protocol: v,
        kind: 'reply',
        id: req.id,
        ok: true,
        payload: { t: req.type }
      })
    );
    const client = new HandoffClient(kernel);
    const [a, b] = await Promise.all([
      client.request('hello'),
      client.request('list_bundles')
    ]);
    expect(a).toEqual({ t: 'hello' });
    expect(b).toEqual({ t: 'list_bundles' });
    expect(kernel.comms).toHaveLength(1);
    client.dispose();
    expect(kernel.comms[0].isDisposed).toBe(true);
  });

  it('fails everything on a reply without id (kernel refused the message)', async () => {
    const kernel = new FakeKernel({}, comm =>
      comm.deliver({
        protocol: v,
        kind: 'reply',
        id: null,
        ok: false,
        error: { type: 'ProtocolError', message: 'bad envelope', stage: null }
      })
    );
    await expect(new HandoffClient(kernel).request('hello')).rejects.toThrow(
      'bad envelope'
    );
  });
});
