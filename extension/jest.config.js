// The helpers and the kernel seam are plain TypeScript: ts-jest runs them in node without
// loading JupyterLab's ES modules (the seam takes a structural kernel interface).
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  },
  collectCoverageFrom: [
    'src/protocol.ts',
    'src/format.ts',
    'src/kernel.ts',
    'src/chart.ts',
    'src/decisions.ts',
    'src/stages.ts'
  ],
  coverageReporters: ['text-summary', 'lcov'],
  reporters: ['default']
};
