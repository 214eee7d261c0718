// The kafkajs modules that ./kafkajs.ts imports from inside the package. kafkajs ships no types for them; each
// is CommonJS, so its default export is its module.exports, which kafkajs.ts casts to the shape it uses.
declare module "kafkajs/src/*" {
  const internals: unknown;
  export default internals;
}
