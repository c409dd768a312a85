/** Repository root (absolute path, with a trailing slash). */
export declare const root: string;
/** A published package of the workspace. */
export interface PublishedPackage {
  name: string;
  dir: string;
}
/** The published packages: every packages/* that is not private. */
export declare function publishedPackages(): PublishedPackage[];
/** Packs every published package into `dest` with `pnpm pack`; `tarball` is an absolute path. */
export declare function packAll(dest: string): Array<PublishedPackage & { tarball: string }>;
