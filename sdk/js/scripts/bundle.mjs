// Bundle the SDK into one ES module for the web page: pica/web/static/pica-client.js, committed so that someone who
// only runs the server needs no build step. `node scripts/bundle.mjs [outfile]` (npm run bundle); tests/sdkjs checks
// that the committed file is what the sources make.
import { build } from "esbuild";

const outfile = process.argv[2] ?? "../../pica/web/static/pica-client.js";
await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  charset: "utf8",
  legalComments: "none",
  banner: { js: "// @pica/client, bundled for the web page from sdk/js (npm run bundle). Do not edit: edit sdk/js/src." },
  outfile,
  logLevel: "warning",
});
