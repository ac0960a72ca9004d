// The local half of the panic button: empty everything this origin may have stored in this
// browser (IndexedDB, localStorage, sessionStorage, Cache Storage, service workers). The
// room pages themselves store nothing without Extra Lock; this also removes what another
// page of the origin (a device binding) left, because panic means "leave no trace".

/** Empty every storage of this origin that a page can reach; resolves when done. */
export async function wipeOriginStorage() {
  const steps = [];
  try {
    localStorage.clear();
  } catch {
    // storage disabled: nothing stored
  }
  try {
    sessionStorage.clear();
  } catch {
    // storage disabled: nothing stored
  }
  if (globalThis.indexedDB?.databases) {
    steps.push(
      indexedDB.databases().then((databases) =>
        Promise.all(
          databases.map(
            ({ name }) =>
              new Promise((resolve) => {
                const request = indexedDB.deleteDatabase(name);
                request.onsuccess = request.onerror = request.onblocked = () => resolve();
              }),
          ),
        ),
      ),
    );
  }
  if (globalThis.caches) {
    steps.push(
      caches.keys().then((names) => Promise.all(names.map((name) => caches.delete(name)))),
    );
  }
  if (navigator.serviceWorker?.getRegistrations) {
    steps.push(
      navigator.serviceWorker
        .getRegistrations()
        .then((registrations) => Promise.all(registrations.map((r) => r.unregister()))),
    );
  }
  await Promise.allSettled(steps);
}
