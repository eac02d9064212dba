// Which packages an npm install put under a directory, for the install-size tests of the packed tarballs.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every installed package folder under `dir` (`node_modules/<name>` and `node_modules/@scope/<name>`,
 * nested `node_modules` too), by its package.json name (the folder path when it has no name).
 * Walks a directory tree npm made in the test, not untrusted input.
 */
export function installedPackages(dir: string): string[] {
  const found: string[] = [];
  const visit = (modules: string) => {
    if (!existsSync(modules)) return;
    for (const entry of readdirSync(modules, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const folders = entry.name.startsWith('@')
        ? readdirSync(join(modules, entry.name), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(modules, entry.name, e.name))
        : [join(modules, entry.name)];
      for (const folder of folders) {
        const manifest = join(folder, 'package.json');
        if (!existsSync(manifest)) continue;
        found.push((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name ?? folder);
        visit(join(folder, 'node_modules'));
      }
    }
  };
  visit(join(dir, 'node_modules'));
  return found;
}
