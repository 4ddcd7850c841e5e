// Lints the web client (src/web/assets) and these tests: names that do not exist and names
// that are never used are errors. Run from the repository root by e2e/run.
import globals from "globals";

export default [
  {
    files: ["src/web/assets/**/*.js"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: globals.browser },
  },
  {
    files: ["e2e/**/*.mjs"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: { ...globals.node, ...globals.browser } },
  },
  {
    rules: {
      "no-undef": "error",
      "no-unused-vars": "error",
      "no-import-assign": "error",
      "no-dupe-keys": "error",
      "no-unreachable": "error",
      "eqeqeq": "error",
    },
  },
];
