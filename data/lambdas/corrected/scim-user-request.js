// SCIM User request converter, corrected: SCIM User JSON -> FusionAuth user.
// Keeps everything the default (data/lambdas/scim-user-request.js) keeps, and
// more, each for a loss the audit found (notebooks/02-audit-mappings.ipynb):
// - user.email is the email the default keeps (the last one flagged primary);
//   without a primary one, the first of type "work", else the first. Every
//   email sent is kept whole in user.data.emails, so a second one (home, or a
//   second primary) is not lost; phone numbers likewise (user.mobilePhone,
//   user.data.phoneNumbers, type "mobile");
// - displayName, title, locale and preferredLanguage are kept in user.data;
// - a manager on the bare path `manager` (Entra's PATCH: a string, an object
//   or a one-item array) is kept as the enterprise extension's manager.
var ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

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

  user.data.emails = valued(scimUser.emails);
  user.email = pick(user.data.emails, "work");
  user.data.phoneNumbers = valued(scimUser.phoneNumbers);
  user.mobilePhone = pick(user.data.phoneNumbers, "mobile");

  user.data.extensions = {};
  (scimUser.schemas || []).forEach(function (urn) {
    if (urn !== "urn:ietf:params:scim:schemas:core:2.0:User") {
      user.data.extensions[urn] = copy(scimUser[urn] || {});
    }
  });

  var manager = bareManager(scimUser.manager);
  if (manager) {
    var block = user.data.extensions[ENTERPRISE] || {};
    block.manager = manager;
    user.data.extensions[ENTERPRISE] = block;
  }
}

// Copies of the items that have a value; undefined when there are none.
function valued(items) {
  var list = (items || []).filter(function (item) {
    return item && item.value;
  });
  return list.length ? list.map(copy) : undefined;
}

// The value the default keeps (the last primary item), else that of the first
// item of `type` (compared without case), else that of the first item.
function pick(items, type) {
  var list = items || [];
  var primary = list.filter(function (item) { return item.primary === true; });
  if (primary.length) {
    return primary[primary.length - 1].value;
  }
  var typed = list.filter(function (item) {
    return String(item.type || "").toLowerCase() === type;
  });
  return (typed[0] || list[0] || {}).value;
}

// A top-level manager as {value, $ref, displayName}; undefined without a value.
function bareManager(manager) {
  if (Array.isArray(manager)) {
    manager = manager[0];
  }
  if (typeof manager === "string" || typeof manager === "number") {
    return manager === "" ? undefined : {value: String(manager)};
  }
  if (!manager || !manager.value) {
    return undefined;
  }
  var kept = {value: manager.value};
  ["$ref", "displayName"].forEach(function (key) {
    if (manager[key]) {
      kept[key] = manager[key];
    }
  });
  return kept;
}

function copy(value) {
  return JSON.parse(JSON.stringify(value));
}
