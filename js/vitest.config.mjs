// Every js/**/*.test.js runs under jsdom (`npm test`).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "jsdom",
    include: ["**/*.test.js"],
    exclude: ["node_modules/**"],
  },
});
