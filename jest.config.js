// Tests run on the compiled output (npm test builds first), so the code under test is
// exactly what `xlstack` runs, and child processes can start dist/src/cli/main.js.
module.exports = {
  rootDir: 'dist/test',
  testMatch: ['**/*.test.js'],
  testEnvironment: 'node',
  testTimeout: 60000,
  maxWorkers: 2,
};
