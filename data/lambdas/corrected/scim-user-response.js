// SCIM User response converter, corrected: FusionAuth user -> SCIM User JSON.
// As the default (data/lambdas/scim-user-response.js), and also returns what
// the corrected request lambda keeps in user.data: displayName, title, locale,
// preferredLanguage, and every email and phone number as sent. The manager it
// keeps is in the enterprise extension, which comes back whole.
function convert(scimUser, user) {
  var data = user.data || {};
  scimUser.active = user.active;
  scimUser.userName = user.username;
  scimUser.name = {
    givenName: user.firstName,
    familyName: user.lastName,
    middleName: user.middleName,
    formatted: user.fullName,
    honorificPrefix: data.honorificPrefix,
    honorificSuffix: data.honorificSuffix
  };
  scimUser.displayName = data.displayName;
  scimUser.title = data.title;
  scimUser.locale = data.locale;
  scimUser.preferredLanguage = data.preferredLanguage;

  if (user.email) {
    scimUser.emails = items(data.emails, user.email, "work");
  }
  if (user.mobilePhone) {
    scimUser.phoneNumbers = items(data.phoneNumbers, user.mobilePhone, "mobile");
  }

  var extensions = data.extensions || {};
  Object.keys(extensions).forEach(function (urn) {
    if (scimUser.schemas.indexOf(urn) === -1) {
      scimUser.schemas.push(urn);
    }
    scimUser[urn] = extensions[urn];
  });
}

// The items kept in user.data when they hold FusionAuth's own value (`kept`);
// when it was changed in FusionAuth, it comes first as the primary item, of
// `type`, and the kept items follow as not primary.
function items(stored, kept, type) {
  var list = (stored || []).filter(function (item) {
    return item && item.value;
  });
  var found = list.some(function (item) {
    return String(item.value).toLowerCase() === String(kept).toLowerCase();
  });
  if (found) {
    return list;
  }
  return [{primary: true, value: kept, type: type}].concat(
    list.map(function (item) {
      var other = JSON.parse(JSON.stringify(item));
      other.primary = false;
      return other;
    })
  );
}
