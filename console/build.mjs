// Builds the console into the directory given as the first argument (CMake passes
// <build>/console, where ferry-broker looks for it): one bundled, minified script, the styles
// (ours and uPlot's) and index.html. No CDN: everything the page loads comes from the broker.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, 'dist'));
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['es2020'],
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});
const css =
  readFileSync(join(here, 'node_modules/uplot/dist/uPlot.min.css'), 'utf8') + '\n' +
  readFileSync(join(here, 'src/style.css'), 'utf8');
writeFileSync(join(out, 'app.css'), css);
cpSync(join(here, 'src/index.html'), join(out, 'index.html'));
