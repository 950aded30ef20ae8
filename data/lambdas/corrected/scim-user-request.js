// SCIM User request converter, corrected: SCIM User JSON -> FusionAuth user.
// Changes from the default (data/lambdas/scim-user-request.js), each for a loss
// the audit found (notebooks/02-audit-mappings.ipynb):
// - an email or phone number sent without `primary: true` is kept: the primary
//   one if any, else the first of type "work" (or "mobile"), else the first;
// - displayName, title, locale and preferredLanguage are kept in user.data.
function convert(user, options, scimUser) {
  var name = scimUser.name || {};
  user.active = scimUser.active;
  user.username = scimUser.userName;
  user.firstName = name.givenName;
  user.lastName = name.familyName;
  user.middleName = name.middleName;
  user.fullName = name.formatted;
  user.password = scimUser.password;
  user.data = user.data || {};
  user.data.honorificPrefix = name.honorificPrefix;
  user.data.honorificSuffix = name.honorificSuffix;
  user.data.displayName = scimUser.displayName;
  user.data.title = scimUser.title;
  user.data.locale = scimUser.locale;
  user.data.preferredLanguage = scimUser.preferredLanguage;

  user.email = pick(scimUser.emails, "work");
  user.mobilePhone = pick(scimUser.phoneNumbers, "mobile");

  user.data.extensions = {};
  (scimUser.schemas || []).forEach(function (urn) {
    if (urn !== "urn:ietf:params:scim:schemas:core:2.0:User") {
      user.data.extensions[urn] = scimUser[urn] || {};
    }
  });
}

// The value of the first primary item, else of the first item of `type`
// (compared without case), else of the first item; undefined if none.
function pick(items, type) {
  var list = (items || []).filter(function (item) {
    return item && item.value;
  });
  var primary = list.filter(function (item) { return item.primary === true; });
  if (primary.length) {
    return primary[0].value;
  }
  var typed = list.filter(function (item) {
    return String(item.type || "").toLowerCase() === type;
  });
  return (typed[0] || list[0] || {}).value;
}
