// What a page keeps in the browser, where the browser lets it: storage may be disabled (private
// modes, embedded frames, a full disk); then reads give null, writes keep nothing, and the page
// goes on with what it has.

const areas = {
  local: () => window.localStorage,
  session: () => window.sessionStorage,
};

/** The value kept under `key` (null: none, or storage disabled). */
export function stored(key, area = "local") {
  try {
    return areas[area]().getItem(key);
  } catch (_) {
    return null;
  }
}

/** Keep `value` under `key`; an empty value forgets it. */
export function store(key, value, area = "local") {
  try {
    if (value) areas[area]().setItem(key, value);
    else areas[area]().removeItem(key);
  } catch (_) {
    /* storage disabled: the page still follows the choice, until it closes */
  }
}

/** The name this browser's viewer chose, else `fallback`. */
export const savedName = (fallback) => stored("jangteo:name") || fallback;
