/**
 * The MongoDB driver, loaded on first use: a worker whose config has no MongoDB source never
 * holds it (the driver and BSON cost about 30 MB of the worker's resident memory).
 * Types come from `import type ... from 'mongodb'`, which loads nothing.
 */
import type * as Mongo from 'mongodb';

let loaded: typeof Mongo | undefined;

/** The driver's module, required the first time it is asked for. */
export function mongodb(): typeof Mongo {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('mongodb') as typeof Mongo);
}

/**
 * Stands for the driver's MongoClient (`new MongoClient(uri, options)`, its static members)
 * without loading the driver before it is used. Its instances are the driver's own.
 */
// A function, not a class, as the target: its prototype is writable, so get() may answer with the driver's.
export const MongoClient = new Proxy(function MongoClient() {} as unknown as typeof Mongo.MongoClient, {
  construct: (_target, args) => new (mongodb().MongoClient)(...(args as ConstructorParameters<typeof Mongo.MongoClient>)),
  get: (_target, key) => Reflect.get(mongodb().MongoClient, key),
});
export type MongoClient = Mongo.MongoClient;
