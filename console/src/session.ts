import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { MeAnswer, Role } from './types.ts';

const ROLES: Role[] = ['viewer', 'operator', 'admin'];

/** true when `role` may do what needs `needed` (the API's own order: viewer < operator < admin) */
export const roleAllows = (role: Role, needed: Role) => ROLES.indexOf(role) >= ROLES.indexOf(needed);

export interface Session {
  me: MeAnswer;
  logout(): Promise<void>;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside a logged-in page');
  return s;
}

/** whether the logged-in operator may do what needs `role`: a viewer sees no action controls */
export function useCan(role: Role): boolean {
  return roleAllows(useSession().me.role, role);
}
