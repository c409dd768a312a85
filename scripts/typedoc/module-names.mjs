// TypeDoc plugin: names each module as users import it (`@spiffe-ts/core/undici`) instead of by its source path
// (`core/src/undici`), without a `@module` tag in the packages' sources.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const mod of context.project.getChildrenByKind(ReflectionKind.Module)) {
      const m = /^([\w-]+)\/src(?:\/(\w+))?$/.exec(mod.name);
      if (m) mod.name = `@spiffe-ts/${m[1]}${m[2] && m[2] !== 'index' ? `/${m[2]}` : ''}`;
    }
  });
}
