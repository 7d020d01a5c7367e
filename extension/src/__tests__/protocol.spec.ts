import {
  COMM_TARGET,
  PROTOCOL_VERSION,
  ProtocolError,
  makeRequest,
  parseKernelMessage
} from '../protocol';

describe('makeRequest', () => {
  it('builds a versioned request envelope', () => {
    const req = makeRequest('handoff', { quantize: true }, 'r1');
    expect(req).toEqual({
      protocol: PROTOCOL_VERSION,
      kind: 'request',
      id: 'r1',
      type: 'handoff',
      payload: { quantize: true }
    });
    expect(COMM_TARGET).toBe('labkit.handoff');
  });

  it('gives each request a distinct id', () => {
    expect(makeRequest('hello').id).not.toEqual(makeRequest('hello').id);
  });
});

describe('parseKernelMessage', () => {
  const v = PROTOCOL_VERSION;

  it('accepts a progress message and normalizes optional fields', () => {
    const msg = parseKernelMessage({
      protocol: v,
      kind: 'progress',
      id: 'r1',
      payload: { stage: 'export', status: 'start' }
    });
    expect(msg).toEqual({
      protocol: v,
      kind: 'progress',
      id: 'r1',
      payload: {
        stage: 'export',
        status: 'start',
        message: '',
        fraction: null,
        elapsed_s: null
      }
    });
  });

  it('keeps a skipped stage and the time a stage took', () => {
    const skip = parseKernelMessage({
      protocol: v,
      kind: 'progress',
      id: 'r1',
      payload: {
        stage: 'bundle',
        status: 'skip',
        message: 'identical to 1.0.0'
      }
    });
    expect(skip.kind === 'progress' && skip.payload.status).toBe('skip');
    const done = parseKernelMessage({
      protocol: v,
      kind: 'progress',
      id: 'r1',
      payload: { stage: 'export', status: 'done', elapsed_s: 1.25 }
    });
    expect(done.kind === 'progress' && done.payload.elapsed_s).toBe(1.25);
  });

  it('maps an unknown progress status to info', () => {
    const msg = parseKernelMessage({
      protocol: v,
      kind: 'progress',
      id: 'r1',
      payload: { stage: 'export', status: 'weird', fraction: 0.5 }
    });
    expect(msg.kind === 'progress' && msg.payload.status).toBe('info');
  });

  it('accepts ok and error replies', () => {
    const ok = parseKernelMessage({
      protocol: v,
      kind: 'reply',
      id: 'r1',
      ok: true,
      payload: {}
    });
    expect(ok.kind === 'reply' && ok.ok).toBe(true);
    const err = parseKernelMessage({
      protocol: v,
      kind: 'reply',
      id: 'r1',
      ok: false,
      error: { type: 'ExportError', message: 'boom', stage: 'export' }
    });
    expect(err).toMatchObject({
      ok: false,
      error: { type: 'ExportError', stage: 'export' }
    });
  });

  it('refuses another protocol version with a message naming both', () => {
    expect(() =>
      parseKernelMessage({
        protocol: 99,
        kind: 'reply',
        id: 'r1',
        ok: true,
        payload: {}
      })
    ).toThrow(new RegExp(`version 99.*speaks ${PROTOCOL_VERSION}`));
  });

  it.each([
    [null, /not a JSON object/],
    [[1, 2], /not a JSON object/],
    [{ protocol: v, kind: 'shout' }, /unknown message kind/],
    [
      { protocol: v, kind: 'progress', id: 3, payload: {} },
      /malformed progress/
    ],
    [{ protocol: v, kind: 'reply', id: 'r', ok: true }, /malformed reply/],
    [
      { protocol: v, kind: 'reply', id: 5, ok: true, payload: {} },
      /id must be/
    ],
    [
      { protocol: v, kind: 'reply', id: 'r', ok: false, error: {} },
      /malformed reply/
    ]
  ])('refuses malformed message %j', (data, pattern) => {
    expect(() => parseKernelMessage(data)).toThrow(ProtocolError);
    expect(() => parseKernelMessage(data)).toThrow(pattern);
  });
});
