#!/usr/bin/env node
// Runs the TypeScript sources through tsx, so the installed CLI needs no build step.
require('tsx/cjs');
require('../src/cli/main.ts');
