export * from './ca.js';
export * from './server.js';
