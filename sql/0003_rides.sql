-- Rides, derived from the log like the accounts: meeting points, offers, requests,
-- the day's ride of an offer ("occurrence", with its stops) and bookings. One row per
-- object, its whole state as JSON, with the columns reads look things up by.

-- A custodial account has no key: the desk signs its commands, saying so ("by").
ALTER TABLE accounts ADD COLUMN custodial INTEGER NOT NULL DEFAULT 0 CHECK (custodial IN (0, 1));

CREATE TABLE ride_objects (
    kind TEXT NOT NULL CHECK (kind IN ('point', 'offer', 'request', 'occurrence', 'booking')),
    id TEXT NOT NULL,
    -- Who it belongs to: the driver of an offer or booking, the passenger of a
    -- request or booking; NULL for meeting points and occurrences.
    driver TEXT,
    passenger TEXT,
    state TEXT NOT NULL CHECK (json_valid(state)),
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE INDEX ride_objects_by_driver ON ride_objects (driver, kind) WHERE driver IS NOT NULL;
CREATE INDEX ride_objects_by_passenger ON ride_objects (passenger, kind) WHERE passenger IS NOT NULL;
